#!/usr/bin/env python3
"""Train and export the bundled "demo" model for mlapi.

What it is
    A binary classifier on scikit-learn's bundled breast-cancer dataset
    (sklearn.datasets.load_breast_cancer; no download needed), restricted to
    five features:

        worst radius, worst texture, worst smoothness, worst compactness,
        worst concavity

    ("worst" = mean of the three largest values of that measurement over the
    cell nuclei in an image.) These were chosen over the "mean ..." versions
    of the same five measurements by 5-fold cross-validation on the training
    split only (accuracy 0.974 vs 0.946); the test split was not used for the
    choice.

    Model: Pipeline(StandardScaler, LogisticRegression), trained on a
    stratified 75/25 train/test split (random_state=42).
    Labels in sklearn's target order: 0 = "malignant", 1 = "benign".

Why the ONNX graph is built by hand
    skl2onnx converts StandardScaler / LogisticRegression to the ai.onnx.ml
    ops Scaler / LinearClassifier, which tract-onnx does not reliably load.
    This script therefore writes the graph itself with the `onnx` helper API
    from the fitted parameters, using only default-domain (ai.onnx) ops, at
    opset 13:

        input  float32[N,5]
          -> Sub(mean) -> Div(scale)            (StandardScaler)
          -> MatMul(coef^T [5,1]) -> Add(b)     logit z, float32[N,1]
          -> Concat(Sigmoid(-z), Sigmoid(z))    "probabilities" float32[N,2]
          -> ArgMax(axis=1, keepdims=0)         "label" int64[N]

    probabilities[:, 0] = p(malignant), probabilities[:, 1] = p(benign).

How to run (from the repository root)
    python3 -m pip install "scikit-learn==1.9.1" "numpy==2.4.6" "onnx==1.23.2"
    # optional, only for the built-in verification step:
    python3 -m pip install "onnxruntime==1.31.1"
    python3 scripts/train_model.py

    (Tested with Python 3.11.7 and exactly those versions. Other recent
    versions should work; the exact bytes of the outputs may then differ in
    the last float digits.)

What it writes (everything under models/ next to this script's parent dir)
    models/demo.onnx          the model (about 1 KB)
    models/demo.json          metadata: labels, features, training mean/std,
                              feature bounds, output names/shapes, accuracy
    models/demo_fixture.json  20 input rows (the spec example
                              [1,2,3,4,5], the training mean, 18 test-set
                              rows) with sklearn's float64
                              probabilities and labels, for checking an ONNX
                              runtime (tract) against sklearn to 1e-5

The script is deterministic: running it twice produces byte-identical files.
If onnxruntime is installed, it also runs the exported model on the fixture
rows and fails if any probability differs from sklearn's by >= 1e-5.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

MODEL_NAME = "demo"
MODEL_VERSION = "1.0.0"
FEATURES = [
    "worst radius",
    "worst texture",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
]
LABELS = ["malignant", "benign"]  # sklearn target order: 0, 1
RANDOM_STATE = 42
TEST_SIZE = 0.25
OPSET = 13
IR_VERSION = 8  # ONNX 1.10+; loadable by tract and onnxruntime
N_FIXTURE_TEST_ROWS = 18
TOLERANCE = 1e-5
SPEC_EXAMPLE = [1.0, 2.0, 3.0, 4.0, 5.0]


def load_data():
    data = load_breast_cancer()
    names = [str(n) for n in data.feature_names]
    idx = [names.index(f) for f in FEATURES]
    assert [str(n) for n in data.target_names] == LABELS, data.target_names
    return data.data[:, idx].astype(np.float64), data.target.astype(np.int64)


def train(X, y):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE, stratify=y
    )
    pipe = Pipeline(
        [
            ("scaler", StandardScaler()),
            (
                "clf",
                LogisticRegression(
                    solver="lbfgs", max_iter=1000, random_state=RANDOM_STATE
                ),
            ),
        ]
    )
    pipe.fit(X_train, y_train)
    return pipe, X_train, X_test, y_train, y_test


def build_onnx(pipe):
    scaler = pipe.named_steps["scaler"]
    clf = pipe.named_steps["clf"]
    n = len(FEATURES)
    assert clf.coef_.shape == (1, n) and list(clf.classes_) == [0, 1]

    inits = [
        numpy_helper.from_array(scaler.mean_.astype(np.float32), "scaler_mean"),
        numpy_helper.from_array(scaler.scale_.astype(np.float32), "scaler_scale"),
        numpy_helper.from_array(clf.coef_.T.astype(np.float32), "coef"),
        numpy_helper.from_array(clf.intercept_.astype(np.float32), "intercept"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "scaler_mean"], ["centered"], name="scaler_sub"),
        helper.make_node("Div", ["centered", "scaler_scale"], ["scaled"], name="scaler_div"),
        helper.make_node("MatMul", ["scaled", "coef"], ["linear"], name="linear_matmul"),
        helper.make_node("Add", ["linear", "intercept"], ["logit"], name="linear_add"),
        helper.make_node("Neg", ["logit"], ["neg_logit"], name="neg"),
        helper.make_node("Sigmoid", ["neg_logit"], ["p_malignant"], name="sigmoid_malignant"),
        helper.make_node("Sigmoid", ["logit"], ["p_benign"], name="sigmoid_benign"),
        helper.make_node(
            "Concat", ["p_malignant", "p_benign"], ["probabilities"], axis=1, name="concat"
        ),
        helper.make_node(
            "ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0, name="argmax"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "mlapi_demo_breast_cancer_logreg",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n])],
        outputs=[
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mlapi scripts/train_model.py",
        producer_version=MODEL_VERSION,
        doc_string=(
            "StandardScaler + LogisticRegression on sklearn breast_cancer, features: "
            + ", ".join(FEATURES)
            + ". probabilities[:,0]=p(malignant), probabilities[:,1]=p(benign); "
            "label: 0=malignant, 1=benign."
        ),
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    onnx.checker.check_model(model, full_check=True)
    bad = [(nd.domain, nd.op_type) for nd in model.graph.node if nd.domain not in ("", "ai.onnx")]
    assert not bad, f"non-default-domain ops: {bad}"
    return model


def fixture_rows(pipe, X_train, X_test, y_test):
    rows = [
        ("spec_example", SPEC_EXAMPLE, None),
        ("training_mean", X_train.mean(axis=0).tolist(), None),
    ]
    for i in range(N_FIXTURE_TEST_ROWS):
        rows.append((f"test_set[{i}]", X_test[i].tolist(), int(y_test[i])))
    X = np.array([r[1] for r in rows], dtype=np.float64)
    proba = pipe.predict_proba(X)
    pred = pipe.predict(X)
    out = []
    for (source, feats, truth), p, lab in zip(rows, proba, pred):
        # A row right at the decision boundary could flip label under float32.
        assert abs(p[1] - 0.5) > 1e-3, (source, p)
        out.append(
            {
                "source": source,
                "features": [float(v) for v in feats],
                "probabilities": [float(p[0]), float(p[1])],
                "label": int(lab),
                "label_name": LABELS[int(lab)],
                "true_label": truth,
            }
        )
    return out


def feature_bounds(X_train):
    # Documented choice: every feature is a non-negative physical measurement,
    # so the lower bound is 0. The upper bound is generous: 10x the training
    # maximum, but at least 10.0, so that deliberately unrealistic inputs such
    # as the spec example [1, 2, 3, 4, 5] are accepted while absurd values
    # (negative, huge, non-finite) can still be rejected.
    bounds = []
    for hi in X_train.max(axis=0):
        bounds.append([0.0, float(round(max(10.0 * float(hi), 10.0), 6))])
    return bounds


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def verify_with_onnxruntime(model_path, fixture):
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: skipping runtime verification")
        return
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    X = np.array([r["features"] for r in fixture["rows"]], dtype=np.float32)
    proba, label = sess.run(["probabilities", "label"], {"input": X})
    expected = np.array([r["probabilities"] for r in fixture["rows"]])
    diff = float(np.max(np.abs(proba.astype(np.float64) - expected)))
    labels_ok = label.tolist() == [r["label"] for r in fixture["rows"]]
    print(
        f"onnxruntime {ort.__version__}: max |onnx - sklearn| = {diff:.3e} "
        f"over {len(X)} rows; labels match: {labels_ok}"
    )
    if not (diff < TOLERANCE and labels_ok):
        sys.exit("verification FAILED")


def main():
    MODELS.mkdir(parents=True, exist_ok=True)
    X, y = load_data()
    pipe, X_train, X_test, y_train, y_test = train(X, y)
    test_accuracy = float(pipe.score(X_test, y_test))
    train_accuracy = float(pipe.score(X_train, y_train))
    scaler = pipe.named_steps["scaler"]

    model = build_onnx(pipe)
    onnx_path = MODELS / "demo.onnx"
    onnx_path.write_bytes(model.SerializeToString(deterministic=True))

    meta = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "labels": LABELS,
        "input_size": len(FEATURES),
        "features": FEATURES,
        "training_mean": [float(v) for v in scaler.mean_],
        "training_std": [float(v) for v in scaler.scale_],
        "training_std_note": "population std (ddof=0) of the training split, as used by StandardScaler",
        "feature_bounds": feature_bounds(X_train),
        "feature_bounds_note": "[0, max(10 * training max, 10)] per feature; all features are non-negative measurements",
        "input": {"name": "input", "dtype": "float32", "shape": ["N", len(FEATURES)]},
        "outputs": {
            "probabilities": {
                "dtype": "float32",
                "shape": ["N", 2],
                "description": "[p(malignant), p(benign)] per row, in label order",
            },
            "label": {
                "dtype": "int64",
                "shape": ["N"],
                "description": "argmax of probabilities: 0=malignant, 1=benign",
            },
        },
        "onnx_opset": OPSET,
        "onnx_ir_version": IR_VERSION,
        "model_type": "StandardScaler + LogisticRegression (lbfgs)",
        "dataset": "sklearn breast_cancer",
        "split": {
            "test_size": TEST_SIZE,
            "random_state": RANDOM_STATE,
            "stratify": True,
            "n_train": int(len(y_train)),
            "n_test": int(len(y_test)),
        },
        "test_accuracy": test_accuracy,
        "train_accuracy": train_accuracy,
        "sklearn_version": sklearn.__version__,
    }
    write_json(MODELS / "demo.json", meta)

    fixture = {
        "description": (
            "Inputs with scikit-learn (float64) predict_proba / predict outputs of the "
            "demo model. An ONNX runtime fed these features as float32 must match "
            "probabilities to within tolerance and labels exactly."
        ),
        "model": "demo.onnx",
        "labels": LABELS,
        "features": FEATURES,
        "tolerance": TOLERANCE,
        "sklearn_version": sklearn.__version__,
        "rows": fixture_rows(pipe, X_train, X_test, y_test),
    }
    write_json(MODELS / "demo_fixture.json", fixture)

    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes)")
    print(f"wrote {MODELS / 'demo.json'}")
    print(f"wrote {MODELS / 'demo_fixture.json'} ({len(fixture['rows'])} rows)")
    print("ops:", [f"{nd.domain or 'ai.onnx'}:{nd.op_type}" for nd in model.graph.node])
    print(f"test accuracy {test_accuracy:.4f}, train accuracy {train_accuracy:.4f}")
    verify_with_onnxruntime(onnx_path, fixture)


if __name__ == "__main__":
    main()
