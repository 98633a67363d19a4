// Claudeway's Swagger UI set-up: the spec of this server, nothing fetched from elsewhere
// (validatorUrl null: no badge from the public validator).
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
