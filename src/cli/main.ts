import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ChartlogError } from '../core/errors.js';

/**
 * The `chartlog` command line (docs/architecture.md §6). Exit codes: 0 success, 1 runtime failure,
 * 2 bad usage or configuration (the message names the argument or field and says the fix).
 * A command appears here only once it really works.
 */
/**
 * Each command's module, loaded only when it is needed: a command pulls in only what it uses
 * (restore needs no Kafka client, binlog reader or replication client), so start-up — a real
 * part of a short restore's time — does not load and compile the whole program.
 */
const COMMANDS: Record<string, () => Promise<(program: Command) => void>> = {
  config: async () => (await import('./config-command.js')).registerConfigCommand,
  keys: async () => (await import('./keys-command.js')).registerKeysCommand,
  phi: async () => (await import('./phi-command.js')).registerPhiCommand,
  replicate: async () => (await import('./replicate-command.js')).registerReplicateCommand,
  restore: async () => (await import('./restore-command.js')).registerRestoreCommand,
  resync: async () => (await import('./resync-command.js')).registerResyncCommand,
  run: async () => (await import('./run-command.js')).registerRunCommand,
  snapshot: async () => (await import('./snapshot-command.js')).registerSnapshotCommand,
  timeline: async () => (await import('./timeline-command.js')).registerTimelineCommand,
  verify: async () => (await import('./verify-command.js')).registerVerifyCommand,
};

/** The program with the command `argv` names registered, or every command when it names none (help, version, a typo). */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const pkg = readPackageJson();
  const program = new Command('chartlog')
    .description('Continuous, encrypted, point-in-time backup of MySQL/MariaDB and PostgreSQL through change-data-capture')
    .version(pkg.version, '-v, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const named = argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]) ? [argv[0]] : Object.keys(COMMANDS);
  for (const name of named) (await COMMANDS[name]!())(program);
  for (const cmd of program.commands) applyExitOverride(cmd);
  return program;
}

/** package.json from the sources (src/cli) or the build (dist/src/cli), whichever runs. */
function readPackageJson(): { version: string } {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string };
    } catch {
      // try the next place
    }
  }
  return { version: 'unknown' };
}

function applyExitOverride(cmd: Command): void {
  cmd.exitOverride();
  for (const sub of cmd.commands) applyExitOverride(sub);
}

/** Runs the CLI and returns the exit code instead of exiting, so tests can call it. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = await buildProgram(argv);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    return reportError(err);
  }
}

function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // --help and --version end through here too, with exit code 0.
    if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
    return 2; // commander already printed what was wrong with the arguments
  }
  if (err instanceof ChartlogError) {
    console.error(`chartlog: ${err.describe()}`);
    return err.exitCode;
  }
  // Unexpected errors: message and stack, never the properties drivers attach (row data).
  const e = err instanceof Error ? err : new Error(String(err));
  console.error(`chartlog: unexpected error: ${e.message}\n${e.stack ?? ''}`);
  return 1;
}

const invokedDirectly = process.argv[1] !== undefined && /[/\\](main\.(ts|js)|chartlog(\.js)?)$/.test(process.argv[1]);
if (invokedDirectly) {
  process.exitCode = await runCli(process.argv.slice(2));
}
