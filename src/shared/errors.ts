/**
 * The errors of the programs themselves (kas and agentk), in one registry next to the tunnel's
 * (src/protocol/errors.ts): configuration mistakes, GitLab failures, refusals. Each has a stable
 * `code`; callers branch on it, never on the message. docs/errors.md lists every code with the exit
 * code and HTTP statuses below; src/protocol/errors-doc.test.ts keeps the two in step.
 */

/** Exit code of a program that stopped cleanly (signal, --help, --version). */
export const EXIT_OK = 0;
/** Exit code of a program that could not run (a listener failed to start, an unexpected error). */
export const EXIT_FAILURE = 1;
/** Exit code for bad flags or configuration, found before anything listens. */
export const EXIT_BAD_CONFIGURATION = 2;

/** What docs/errors.md says about one program error code. */
export interface ProgramErrorInfo {
  /** The program that raises it. */
  readonly program: 'kas' | 'agentk';
  /** The exit code when the program stops on it at start; absent when it never ends the process. */
  readonly exitCode?: number;
  /** HTTP statuses this program answers a client with because of it; absent when it answers none. */
  readonly httpStatus?: readonly number[];
  /** What it means, for docs/errors.md and for people reading logs. */
  readonly description: string;
}

export const PROGRAM_ERROR_CODES = {
  CONFIG_INVALID: {
    program: 'kas',
    exitCode: EXIT_BAD_CONFIGURATION,
    description: 'kas\'s configuration file is missing, not YAML or not valid, or a file it names cannot be used; the message names the key.',
  },
  BAD_CONFIGURATION: {
    program: 'agentk',
    exitCode: EXIT_BAD_CONFIGURATION,
    description: 'agentk\'s flags, environment or a file they name are wrong; the message names the flag or variable.',
  },
  AGENT_CONFIG_INVALID: {
    program: 'kas',
    description: 'An agent\'s configuration file (config.yaml) is invalid; the message names every bad key and is safe to show to its editors.',
  },
  GITLAB_ERROR: {
    program: 'kas',
    description: 'A call to GitLab failed: GitLab answered an error status, an answer of the wrong shape, or no answer at all.',
  },
  PROXY_REFUSED: {
    program: 'kas',
    httpStatus: [401, 403],
    description: 'kas refused a proxy request after GitLab\'s answer: the credential belongs to another agent, or the CI job may not use the agent.',
  },
  KAS_REFUSED: {
    program: 'agentk',
    description: 'kas answered agentk\'s WebSocket upgrade with an HTTP status instead of accepting the connection.',
  },
} as const satisfies Record<string, ProgramErrorInfo>;

export type ProgramErrorCode = keyof typeof PROGRAM_ERROR_CODES;

/**
 * The base of every program error: a registered `code` and the underlying `cause`, when there is one.
 * Subclasses add what their callers need (the key at fault, an HTTP status) and keep their own name.
 */
export class ProgramError extends Error {
  readonly code: ProgramErrorCode;

  constructor(code: ProgramErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProgramError';
    this.code = code;
  }
}

/** True when `err` is a program error with this code: the test callers use instead of `instanceof` or the message. */
export function hasErrorCode<C extends ProgramErrorCode>(err: unknown, code: C): err is ProgramError & { readonly code: C } {
  return err instanceof ProgramError && err.code === code;
}
