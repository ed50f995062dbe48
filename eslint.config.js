// ESLint: the recommended JavaScript and TypeScript rules. Formatting is Prettier's job (.prettierrc.json), and the
// layers are dependency-cruiser's (.dependency-cruiser.cjs).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/.build/**', 'test/fixtures/npx-package/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: globals.node },
    rules: {
      // `_name` marks what is deliberately unused (a destructured field dropped on purpose).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  // The dashboard's page runs in the browser.
  { files: ['src/dashboard/static/**/*.js'], languageOptions: { globals: globals.browser } },
  {
    // Tests read whatever JSON came back, and hostile-input tests write control characters on purpose.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off', 'no-control-regex': 'off' },
  },
);
