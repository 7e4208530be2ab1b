"""tritonclient.http (PyPI) against a running mlapi: live, ready, model
metadata, and infer with binary data on and off. Prints one JSON document
of what it got, for tests/it/oip.rs to compare with /api/v2/predict.

usage: tritonclient_check.py HOST:PORT API_KEY
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient

url, key = sys.argv[1], sys.argv[2]
headers = {"X-API-Key": key}
client = httpclient.InferenceServerClient(url=url)
rows = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [14.0, 20.0, 0.12, 0.2, 0.2]], dtype=np.float32)


def infer(binary):
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    if binary:
        # No outputs named: tritonclient asks for every output in binary.
        outputs = None
    else:
        outputs = [
            httpclient.InferRequestedOutput("probabilities", binary_data=False),
            httpclient.InferRequestedOutput("label", binary_data=False),
        ]
    # A fresh dict: tritonclient adds Inference-Header-Content-Length to it.
    result = client.infer("demo", [tensor], outputs=outputs, headers=dict(headers))
    probabilities = result.as_numpy("probabilities")
    labels = result.as_numpy("label")
    return {
        "shape": list(probabilities.shape),
        "probabilities": probabilities.astype(float).tolist(),
        "labels": [l.decode() if isinstance(l, bytes) else str(l) for l in labels.tolist()],
        "binary_response": result.get_response().get("outputs", [{}])[0].get("parameters") is not None,
    }


out = {
    "live": client.is_server_live(headers=headers),
    "ready": client.is_server_ready(headers=headers),
    "model_ready": client.is_model_ready("demo", headers=headers),
    "metadata": client.get_model_metadata("demo", headers=headers),
    "binary": infer(True),
    "json": infer(False),
}
print(json.dumps(out))
