// The explorer's linter (`make test` runs it): ESLint's recommended rules on plain ES modules.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["frontend/**/*.js"],
    languageOptions: { ecmaVersion: 2024, sourceType: "module", globals: { ...globals.browser } },
  },
  {
    // The unit tests run under `node --test`.
    files: ["frontend/tests/**/*.js"],
    languageOptions: { globals: { ...globals.node } },
  },
];
