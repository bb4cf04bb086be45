// One lint configuration for the whole tree; `npm test` runs it before any test.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The dependency order of the folders (docs/architecture.md): a folder imports only folders
 * before it. Folders of one rank (compactor, restore) do not import each other. replicate comes
 * after restore: it loads a replica through restore's streaming path and writes values in the
 * text forms of restore's targets.
 * connectors/<db>/ import only src/core; only the pipeline and the CLI reach the connectors.
 */
export const FOLDER_ORDER = [['core'], ['config'], ['storage'], ['phi'], ['codec'], ['archive'], ['bus'], ['compactor', 'restore'], ['replicate'], ['pipeline'], ['cli']];

const rankOf = new Map(FOLDER_ORDER.flatMap((names, rank) => names.map((n) => [n, rank])));
const upward = (regex, message) => ({ regex, message });
const folderBoundaries = FOLDER_ORDER.flat().map((folder) => {
  const rank = rankOf.get(folder);
  const above = FOLDER_ORDER.flat().filter((other) => other !== folder && rankOf.get(other) >= rank);
  const patterns = [];
  if (above.length > 0) {
    patterns.push(
      upward(`^(\\.\\./)+(${above.join('|')})/`, `src/${folder} may import only folders before it (${FOLDER_ORDER.slice(0, rank).flat().join(', ') || 'none'}): move the shared piece down, or the caller up (docs/architecture.md).`),
    );
  }
  if (rank < rankOf.get('pipeline')) {
    patterns.push(upward('^(\\.\\./)+connectors/', `src/${folder} must not know the connectors: ask the SourceConnector contract in src/core (docs/architecture.md).`));
  }
  return { files: [`src/${folder}/**/*.ts`], rules: { 'no-restricted-imports': ['error', { patterns }] } };
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'benchmarks/results/**', '.services/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': ['error', { allow: ['error'] }],
    },
  },
  ...folderBoundaries,
  {
    // One folder per database: it reads the contract in src/core and nothing else of chartlog.
    files: ['connectors/*/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [upward('^\\.\\./\\.\\./src/(?!core/)', 'connectors import only src/core: type the slice of configuration or service they need in the connector or in src/core (docs/architecture.md).'), upward('^\\.\\./(?!\\.\\./)', 'a connector does not import another connector; shared pieces belong in src/core.')] },
      ],
    },
  },
  {
    // Tests, benchmarks and the CLI print to the terminal on purpose.
    files: ['test/**', 'benchmarks/**', 'scripts/**', 'src/cli/**', 'bin/**'],
    rules: { 'no-console': 'off' },
  },
);
