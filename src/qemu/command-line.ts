/**
 * Recognising failure in HMP output. HMP has no status: a failed command prints a message and the prompt
 * comes back as after a success, and QMP's `human-monitor-command` returns `{"return": text}` either way.
 * These are the shapes QEMU's failure messages take (checked against QEMU 7.2 in test/qemu/monitor-clients.test.ts):
 *
 *   Error: Snapshot 'x' does not exist in one or more devices      hmp_handle_error, most commands
 *   unknown command: 'foo'                                           the dispatcher
 *   hostfwd_add: string expected / Try "help hostfwd_add" ...        argument parsing
 *   Could not set up host forwarding rule 'tcp::10080-:80'           slirp
 *   Invalid host forwarding rule 'bogus' (No : separators)           slirp
 *   unrecognized netdev id 'x'                                       slirp
 *   host forwarding rule for tcp::10080 not found                    slirp (hostfwd_remove)
 *   invalid parameter: nokey / invalid size                          sendkey, block_resize
 */

const FAILURE_FIRST_LINE = [
  /^Error: /,
  /^unknown command: /,
  /^Could not /,
  /^Invalid /,
  /^invalid /,
  /^unrecognized /,
  /^host forwarding rule for .* not found$/,
  /^unexpected end of expression$/,
  /^[a-z_|]+: .*(expected|extraneous characters at the end of line|missing)/,
];

const FAILURE_ANY_LINE = /^Try "help [^"]*" for more information$/;
/** savevm on a full disk prints `failed to save SaveStateEntry ...` first and the `Error:` line second. */
const ERROR_ANY_LINE = /^Error: /;

/**
 * The failure message when `output` (CRLF already turned into LF) reports a failure, else undefined.
 * Only the message lines are returned, without the "Try help" hint, so it reads well after "QEMU: ".
 */
export function hmpFailure(output: string): string | undefined {
  const lines = output.split('\n').map((l) => l.trimEnd());
  const first = lines.find((l) => l.trim() !== '');
  if (first === undefined) return undefined;
  const failed =
    FAILURE_FIRST_LINE.some((re) => re.test(first)) ||
    lines.some((l) => FAILURE_ANY_LINE.test(l) || ERROR_ANY_LINE.test(l));
  if (!failed) return undefined;
  return lines
    .filter((l) => l.trim() !== '' && !FAILURE_ANY_LINE.test(l))
    .join('\n')
    .trim();
}

/**
 * Why a command line cannot be sent as one HMP command, or undefined when it can. HMP commands travel as one
 * line: a newline would smuggle in a second command.
 */
export function commandLineProblem(command: string): string | undefined {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(command)) {
    return 'a monitor command must be one line without control characters (newline, carriage return, escape)';
  }
  if (command.trim() === '') return 'the monitor command is empty';
  return undefined;
}

/**
 * HMP's line editor keeps at most 4095 bytes of a line and runs the cut-off prefix: a longer command line is
 * refused before anything is sent. (QMP's human-monitor-command has no such limit.)
 */
export const MAX_HMP_LINE_BYTES = 4095;

/** Why a command line cannot go to an HMP socket, or undefined when it can. */
export function hmpLineProblem(command: string): string | undefined {
  const single = commandLineProblem(command);
  if (single) return single;
  const bytes = Buffer.byteLength(command);
  return bytes > MAX_HMP_LINE_BYTES
    ? `the command is ${bytes} bytes, and an HMP monitor reads at most ${MAX_HMP_LINE_BYTES} bytes of a line (it would run the first ${MAX_HMP_LINE_BYTES}); send it through a QMP socket`
    : undefined;
}
