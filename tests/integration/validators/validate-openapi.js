// Validates an OpenAPI document with @apidevtools/swagger-parser (an independent validator):
// node validate-openapi.js FILE — exit 0 when valid, 1 with the validator's message when not.
const SwaggerParser = require("@apidevtools/swagger-parser");
SwaggerParser.validate(process.argv[2]).then(
  (api) => console.log(`valid OpenAPI ${api.openapi}: ${Object.keys(api.paths).length} paths`),
  (err) => { console.error(`invalid: ${err.message}`); process.exit(1); });
