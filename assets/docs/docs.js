// Starts Swagger UI on /openapi.json. A file, not an inline script: the
// page's CSP allows scripts from this origin only.
"use strict";
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // The public validator would be a third-party request the CSP refuses.
  validatorUrl: null,
  // Tokens and keys stay in memory: a reload signs out.
  persistAuthorization: false,
});
