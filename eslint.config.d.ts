// Types of what the tests read from eslint.config.js (the folder order the lint rule enforces).
export declare const FOLDER_ORDER: readonly (readonly string[])[];
declare const config: unknown;
export default config;
