/**
 * Every qvm command, declared to commander one function each: `main.ts` declares them all, and a command
 * entry (`entries/`) declares only its own, so its bundle holds only the code that command can run (each
 * action imports its module when it runs; esbuild leaves out what no declared command imports).
 */
import { Argument, type Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../errors.js';
import { MAX_DURATION_MS } from '../manifest/checks/limits.js';
import { formatDuration, parseDuration } from '../model/units.js';
import type { Output } from './output.js';

export type SetExitCode = (code: number) => void;
export type DeclareCommand = (program: Command, output: Output, setExitCode: SetExitCode) => void;

export const DEFAULT_MANIFEST = 'qvm.yaml';

/** Commander parser for duration flags: `500ms`, `30s`, `2m`, or seconds. */
export function durationOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined)
    throw new InvalidArgumentError('must be a duration such as 500ms, 10s or 2m, or a number of seconds');
  // Node's timers fire at once past 2^31-1 ms: a day is more than any flag needs.
  if (ms > MAX_DURATION_MS)
    throw new InvalidArgumentError(`must be at most ${formatDuration(MAX_DURATION_MS)}`);
  return ms;
}

function fileOption(): Option {
  return new Option('-f, --file <path>', 'the manifest (or a folder of *.yaml/*.yml manifests)').default(
    DEFAULT_MANIFEST,
  );
}

function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format').choices(['human', 'json']).default('human');
}

/** Deadline for each VM's monitor while observing; a frozen VM is reported as unresponsive after it. */
function observeTimeoutOption(): Option {
  return new Option('--timeout <duration>', 'how long each VM may take to answer its monitor')
    .default(5000, '5s')
    .argParser(durationOption);
}

/**
 * A monitor socket from --socket, or from a VM name in the manifest: the VM's HMP socket (kept for people,
 * so an open console never blocks qvm's own QMP socket), or an adopted VM's own socket.
 */
async function resolveSocket(
  opts: { socket?: string; file: string },
  words: string[],
): Promise<{ socket: string; rest: string[]; label?: string }> {
  if (opts.socket) return { socket: opts.socket, rest: words };
  const [vm, ...rest] = words;
  if (!vm) throw new UsageError('name a VM, or give --socket PATH');
  const { loadContext, findVm } = await import('./context.js');
  const { vmPaths } = await import('../runtime/paths.js');
  const context = await loadContext(opts.file);
  const spec = findVm(context, vm);
  return { socket: spec.monitor ?? vmPaths(context.namespace, vm).hmp, rest, label: vm };
}

function timeoutOption(): Option {
  return new Option('--timeout <duration>', 'how long to wait for QEMU to answer')
    .default(10_000, '10s')
    .argParser(durationOption);
}

// --- The commands that check, plan and carry out a manifest: validate, plan, apply, watch.

export function declareValidate(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('validate')
    .description(
      'check a manifest without touching any VM; prints every problem, each with file, line and field',
    )
    .addOption(fileOption())
    .action(async (opts: { file: string }) => {
      const { validateCommand } = await import('./validate.js');
      setExitCode(await validateCommand(opts.file, output));
    });
}

export function declarePlan(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('plan')
    .description('show what apply would change to make the VMs match the manifest, without changing anything')
    .addOption(fileOption())
    .option('--prune', 'also plan to stop running VMs that the manifest no longer lists', false)
    .option('--discard-saved-state', 'plan to drop hibernated states instead of resuming them', false)
    .option(
      '--detailed-exitcode',
      'exit 0 when there are no changes, 1 on error, 2 when there are changes',
      false,
    )
    .addOption(outputOption())
    .addOption(observeTimeoutOption())
    .action(async (opts) => {
      const { planCommand } = await import('./plan.js');
      setExitCode(await planCommand(opts, output));
    });
}

export function declareApply(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('apply')
    .description(
      'make the VMs match the manifest: live where QEMU allows (forwards), else by starting, stopping or restarting',
    )
    .addOption(fileOption())
    .option('--prune', 'also stop running VMs that the manifest no longer lists', false)
    .option(
      '--discard-saved-state',
      'drop a hibernated state (state: saved) that cannot or may not be resumed, and boot cold',
      false,
    )
    .option('--dry-run', 'only show the plan', false)
    .option(
      '--refresh-snapshot',
      'recreate the warm snapshot of VMs with snapshot: and ready: (cold boot, then save)',
      false,
    )
    .option('--no-wait', 'fail at once when another qvm is working on these VMs, instead of waiting')
    .addOption(outputOption())
    .addOption(observeTimeoutOption())
    .action(async (opts) => {
      const { applyCommand } = await import('./plan.js');
      setExitCode(await applyCommand(opts, output));
    });
}

export function declareWatch(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('watch')
    .description(
      'keep the VMs converged: reconcile when the manifest changes, when a VM changes state or dies, and every --interval',
    )
    .addOption(
      new Option('-f, --file <path>', 'the manifest, or a folder of *.yaml/*.yml manifests').default(
        DEFAULT_MANIFEST,
      ),
    )
    .addOption(
      new Option('--interval <duration>', 'periodic resync, for what no event reports')
        .default(30_000, '30s')
        .argParser(durationOption),
    )
    .option('--prune', 'also stop running VMs that the manifest no longer lists', false)
    .option(
      '--live-only',
      'apply only changes that keep processes running (and starts); report restarts and stops as pending',
      false,
    )
    .option('--json', 'print NDJSON events instead of lines', false)
    .addOption(observeTimeoutOption())
    .addHelpText(
      'after',
      `
An invalid, emptied or deleted manifest changes nothing: the errors are logged and the next valid save is
applied. SIGINT or SIGTERM ends watching; the VMs keep running.`,
    )
    .action(async (opts) => {
      const { watchCommand } = await import('./watch.js');
      setExitCode(await watchCommand(opts, output));
    });
}

// --- The commands about VMs that exist: status, destroy, logs, snapshot.

export function declareStatus(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('status')
    .description(
      'one row per VM: state, pid, forwards, snapshots, uptime (VMs no longer in the manifest included)',
    )
    .addOption(fileOption())
    .addOption(outputOption())
    .addOption(observeTimeoutOption())
    .action(async (opts) => {
      const { statusCommand } = await import('./status.js');
      setExitCode(await statusCommand(opts, output));
    });
}

export function declareDestroy(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('destroy')
    .description('stop VMs (all, or the ones named) and remove their runtime files; disks are kept')
    .argument('[vm...]', 'VMs to destroy (default: every VM of the manifest and its namespace)')
    .addOption(fileOption())
    .option(
      '--delete-disks',
      'also delete the disks qvm created (never a backing image or a disk that was there before)',
      false,
    )
    .option(
      '--delete-data-disks',
      'with --delete-disks, also delete the data disks (disks:) qvm created; without it they are kept',
      false,
    )
    .option('--no-wait', 'fail at once when another qvm is working on these VMs, instead of waiting')
    .addOption(observeTimeoutOption())
    .action(async (names: string[], opts) => {
      const { destroyCommand } = await import('./destroy.js');
      setExitCode(await destroyCommand(names, opts, output));
    });
}

export function declareLogs(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('logs')
    .description("print a VM's serial console and QEMU's own messages")
    .argument('<vm>', 'the VM')
    // `-f` is the manifest everywhere, but `qvm logs web -f` is what tail users type to follow: with no
    // value after it, -f follows.
    .addOption(
      new Option('-f, --file [path]', 'the manifest; -f with no path follows, like tail -f').default(
        DEFAULT_MANIFEST,
      ),
    )
    .option('-F, --follow', 'keep printing what is appended (Ctrl-C ends)', false)
    .option('--serial', 'only the serial console', false)
    .option('--qemu', "only QEMU's messages", false)
    .action(
      async (
        name: string,
        opts: { file: string | true; follow: boolean; serial: boolean; qemu: boolean },
      ) => {
        const { logsCommand } = await import('./logs.js');
        const follow = opts.follow || opts.file === true;
        const file = opts.file === true ? DEFAULT_MANIFEST : opts.file;
        setExitCode(await logsCommand(name, { ...opts, file, follow }, output));
      },
    );
}

export function declareSnapshot(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('snapshot')
    .description(
      'list, save or delete snapshots of a VM: through the monitor while it runs, with qemu-img while stopped',
    )
    .addArgument(new Argument('<action>', 'list, save or delete').choices(['list', 'save', 'delete']))
    .argument('<vm>', 'the VM')
    .argument('[tag]', 'the snapshot tag (save, delete)')
    .addOption(fileOption())
    .option('--force', 'delete even the snapshot the manifest boots from', false)
    .addOption(
      new Option('-o, --output <format>', 'output format of list')
        .choices(['human', 'json'])
        .default('human'),
    )
    .addOption(observeTimeoutOption())
    .action(async (action: string, vm: string, tag: string | undefined, opts) => {
      const { snapshotCommand } = await import('./snapshot.js');
      setExitCode(await snapshotCommand(action, vm, tag, opts, output));
    });
}

// --- The commands for the guest and its images: ssh, cp, ssh-config, pull, images.

export function declareSsh(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('ssh')
    .description("log in to a VM with `ssh:` (qvm's key, its host key checked), or run one command there")
    .usage('[options] VM [-- COMMAND [ARGS...]]')
    .argument('<vm>', 'the VM')
    .argument('[command...]', 'a command and its arguments, run as given (no shell: use sh -c for pipelines)')
    .addOption(fileOption())
    .addOption(observeTimeoutOption())
    .addHelpText(
      'after',
      `
The command's exit status is qvm's, and stdin, stdout and stderr pass through.`,
    )
    .action(async (vm: string, command: string[], opts) => {
      const { sshCommand } = await import('./ssh.js');
      setExitCode(await sshCommand(vm, command, opts, output));
    });
}

export function declareCp(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('cp')
    .description('copy files between this machine and a VM with `ssh:`; VM:PATH names a path on the VM')
    .usage('[options] SRC... DST')
    .argument('<paths...>', 'sources, then the destination; one side VM:PATH')
    .option('-r, --recursive', 'copy folders', false)
    .addOption(fileOption())
    .addOption(observeTimeoutOption())
    .action(async (paths: string[], opts) => {
      const { cpCommand } = await import('./ssh.js');
      setExitCode(await cpCommand(paths, opts, output));
    });
}

export function declareSshConfig(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('ssh-config')
    .description(
      'print OpenSSH Host blocks (qvm-VM) for the VMs with `ssh:`, for ssh -F and VS Code Remote-SSH',
    )
    .argument('[vm...]', 'the VMs (default: every VM with ssh:)')
    .addOption(fileOption())
    .action(async (vms: string[], opts) => {
      const { sshConfigCommand } = await import('./ssh.js');
      setExitCode(await sshConfigCommand(vms, opts, output));
    });
}

export function declareExec(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('exec')
    .description('run a command in a VM through its guest agent (agent: true): no network or SSH needed')
    .usage('[options] VM -- COMMAND [ARGS...]')
    .argument('<vm>', 'the VM')
    .argument(
      '[command...]',
      'the command and its arguments, run as given (no shell: use sh -c for pipelines)',
    )
    .option('-i, --stdin', "pass qvm's stdin to the command (read to its end first)")
    .addOption(fileOption())
    .addOption(observeTimeoutOption())
    .addHelpText(
      'after',
      `
The output is streamed as the command writes it; the command's exit status is qvm's. Like kubectl exec and
docker exec, stdin is passed only with -i: without it qvm never reads stdin, so an open pipe (a CI runner's,
ssh's) cannot hold it up. With -i it is read to its end and handed over whole at the start.`,
    )
    .action(async (vm: string, command: string[], opts) => {
      const { execCommand } = await import('./guest.js');
      setExitCode(await execCommand(vm, command, opts, output));
    });
}

export function declareScreenshot(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('screenshot')
    .description("save a VM's screen as PNG (QMP screendump; works with or without display:)")
    .argument('<vm>', 'the VM')
    .option('-o, --output <file>', 'where to write the PNG (- for stdout; default VM-TIME.png here)')
    .addOption(fileOption())
    .addOption(observeTimeoutOption())
    .action(async (vm: string, opts) => {
      const { screenshotCommand } = await import('./guest.js');
      setExitCode(await screenshotCommand(vm, opts, output));
    });
}

export function declareVnc(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('vnc')
    .description(
      'say where a VM with display: serves VNC; --tunnel PORT offers its unix socket on 127.0.0.1:PORT',
    )
    .argument('<vm>', 'the VM')
    .option(
      '--tunnel <port>',
      "listen on 127.0.0.1:PORT and pass connections to the VM's VNC socket, until Ctrl-C",
    )
    .addOption(fileOption())
    .addOption(observeTimeoutOption())
    .action(async (vm: string, opts) => {
      const { vncCommand } = await import('./guest.js');
      setExitCode(await vncCommand(vm, opts, output));
    });
}

export function declarePull(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('pull')
    .description("download the manifest's images into the cache ahead of time (apply does it when needed)")
    .addOption(fileOption())
    .action(async (opts) => {
      const { pullCommand } = await import('./images.js');
      setExitCode(await pullCommand(opts, output));
    });
}

export function declareImages(program: Command, output: Output, setExitCode: SetExitCode): void {
  const images = program
    .command('images')
    .description('list the image cache: digest, size, URL and the disks made from each image')
    .addOption(outputOption())
    .action(async (opts) => {
      const { imagesCommand } = await import('./images.js');
      setExitCode(await imagesCommand(opts, output));
    });
  images
    .command('prune')
    .description('remove the cached images that no existing disk is made from')
    .action(async () => {
      const { pruneImagesCommand } = await import('./images.js');
      setExitCode(await pruneImagesCommand(output));
    });
}

// --- The commands that talk to a monitor directly: monitor, console.

export function declareMonitor(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('monitor')
    .description(
      'send one command to a QEMU monitor and print its output; exit 1 when QEMU reports a failure, 2 when QEMU cannot be reached or does not answer',
    )
    .usage('[options] (VM | --socket PATH) COMMAND...')
    .option(
      '-s, --socket <path>',
      'a monitor socket (QMP or HMP, told apart by what it says first) instead of a VM name',
    )
    .addOption(fileOption())
    .addOption(timeoutOption())
    .argument(
      '<words...>',
      'VM name (without --socket), then an HMP command line such as `info usernet`, or raw QMP JSON on a QMP socket',
    )
    .action(async (words: string[], opts: { socket?: string; file: string; timeout: number }) => {
      const { monitorCommand } = await import('./monitor.js');
      const { socket, rest } = await resolveSocket(opts, words);
      setExitCode(await monitorCommand(socket, rest, { timeoutMs: opts.timeout }, output));
    });
}

export function declareConsole(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('console')
    .description(
      'interactive monitor with line editing, history and completion; Ctrl-D leaves and the VM keeps running',
    )
    .usage('[options] (VM | --socket PATH)')
    .option('-s, --socket <path>', 'a monitor socket (QMP or HMP) instead of a VM name')
    .addOption(fileOption())
    .addOption(timeoutOption())
    .argument('[vm]', 'the VM (without --socket)')
    .action(async (vm: string | undefined, opts: { socket?: string; file: string; timeout: number }) => {
      const { consoleCommand } = await import('./console.js');
      const { socket, label } = await resolveSocket(opts, vm ? [vm] : []);
      setExitCode(await consoleCommand(socket, { timeoutMs: opts.timeout, label }, output));
    });
}

// --- The command that carries the manifest to another engine: export.

export function declareExport(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('export')
    .description(
      "write the manifest's VMs as Nomad jobs or KubeVirt documents; what the engine cannot express is a warning",
    )
    .argument('[vm...]', 'VMs to export (default: every VM of the manifest)')
    .addOption(
      new Option('--to <engine>', 'the engine: nomad (qemu driver job JSON) or kubevirt (YAML)')
        .choices(['nomad', 'kubevirt'])
        .makeOptionMandatory(),
    )
    .addOption(fileOption())
    .option('-o, --output <dir>', 'a folder for one file per VM, or - for stdout', '-')
    .option('--strict', 'fail (exit 1, nothing written) when anything does not carry over exactly', false)
    .option(
      '--artifact-base <url>',
      'URL serving local files as URL/VM/FILE (Nomad artifacts, KubeVirt http sources)',
    )
    .option('--registry <registry>', 'registry for the container images KubeVirt needs (kernel boot, ISOs)')
    .addOption(
      new Option(
        '--network <binding>',
        "KubeVirt interface binding: masquerade, or the slirp plugin (qvm's addresses)",
      )
        .choices(['masquerade', 'slirp'])
        .default('masquerade'),
    )
    .option(
      '--ssh-key <file>',
      "a public key (.pub) to authorize for the VMs' ssh: user; repeat for more",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .addHelpText(
      'after',
      `
Output: one file per VM in -o DIR (VM.nomad.json, VM.kubevirt.yaml); on stdout the files one after the other
(one YAML stream for kubectl; one JSON job after another for Nomad, whose job run reads one: name the VM).
Warnings go to stderr, each naming the VM and the field.`,
    )
    .action(async (names: string[], opts) => {
      const { exportCommand } = await import('./export.js');
      setExitCode(await exportCommand(names, opts, output));
    });
}

// --- The commands that help write and read manifests: init, explain, schema, completion.

export function declareInit(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('init')
    .description('write a commented starter manifest; never overwrites a file')
    .addOption(new Option('-f, --file <path>', 'the manifest to write').default(DEFAULT_MANIFEST))
    .addOption(
      new Option(
        '--image <name>',
        'a development VM made from this cloud image, with cloud-init and ssh',
      ).choices(['debian-12']),
    )
    .action(async (opts) => {
      const { initCommand } = await import('./init.js');
      setExitCode(initCommand(opts, output));
    });
}

export function declareExplain(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('explain')
    .description(
      'document a manifest field: description, type, default, what changing it does, its fields and examples',
    )
    .argument('[field]', 'a field path such as vms.ready.http, disk.size or images (default: the top level)')
    .option('-r, --recursive', 'list every field under it, as a tree', false)
    .action(async (field: string | undefined, opts: { recursive: boolean }) => {
      const { explainCommand } = await import('./explain.js');
      setExitCode(explainCommand(field, opts, output));
    });
}

export function declareSchema(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('schema')
    .description("print the manifest's JSON Schema (this qvm's version), for editors and CI")
    .action(async () => {
      const { schemaCommand } = await import('./schema-cmd.js');
      setExitCode(schemaCommand(output));
    });
}

export function declareCompletion(program: Command, output: Output, setExitCode: SetExitCode): void {
  program
    .command('completion')
    .description('print a shell completion script: commands, options, and the VM names of the manifest')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh', 'fish']))
    .action(async (shell: 'bash' | 'zsh' | 'fish') => {
      const { completionCommand } = await import('./completion.js');
      setExitCode(completionCommand(shell, output));
    });
}
