/**
 * The examples at the end of every command's `--help`, as kubectl and gh end theirs: two or three command
 * lines a user can run as they are. Keyed by the command's path (`images prune`); the test in
 * test/unit/help.test.ts checks that every command has some and that every option they use exists.
 */
import type { Command } from 'commander';

export const HELP_EXAMPLES: Record<string, string[]> = {
  '': [
    'qvm init && qvm apply                  # a starter qvm.yaml, then its VM running',
    'qvm plan -f vms/                       # what apply would change, for a folder of manifests',
    'qvm explain vms.ready                  # what a manifest field means',
  ],
  validate: [
    'qvm validate',
    'qvm validate -f vms/                   # every *.yaml of a folder, checked as one manifest',
  ],
  plan: [
    'qvm plan',
    'qvm plan --detailed-exitcode           # exit 2 when there are changes, for CI',
    "qvm plan -o json | jq '.summary'",
  ],
  apply: [
    'qvm apply',
    'qvm apply --prune                      # also stop the VMs the manifest no longer lists',
    'qvm apply -f vms/ --no-wait            # fail at once if another qvm is busy with these VMs',
  ],
  watch: [
    'qvm watch',
    'qvm watch -f /srv/vms --interval 1m --prune',
    'qvm watch --json | jq -c \'select(.event == "action-failed")\'',
  ],
  status: ['qvm status', 'qvm status -o json | jq -r \'.items[] | select(.state != "running") | .name\''],
  destroy: [
    'qvm destroy web',
    'qvm destroy --delete-disks             # every VM of the manifest, and the disks qvm created',
  ],
  logs: [
    'qvm logs web',
    'qvm logs web -f                        # keep printing, like tail -f',
    "qvm logs web --qemu                    # only QEMU's own messages",
  ],
  snapshot: [
    'qvm snapshot list web',
    'qvm snapshot save web before-upgrade',
    'qvm snapshot delete web before-upgrade',
  ],
  ssh: ['qvm ssh dev', 'qvm ssh dev -- uname -a', 'qvm ssh dev -- tar c -C /srv . | tar x'],
  cp: ['qvm cp notes.txt dev:/tmp/', 'qvm cp -r dev:/var/log/apt ./apt-logs'],
  'ssh-config': [
    'qvm ssh-config > ~/.ssh/qvm.conf && ssh -F ~/.ssh/qvm.conf qvm-dev',
    'ssh -F <(qvm ssh-config dev) qvm-dev true',
  ],
  pull: ['qvm pull', 'qvm pull -f vms/'],
  images: ['qvm images', "qvm images -o json | jq -r '.items[].url'", 'qvm images prune'],
  'images prune': ['qvm images prune', 'qvm images && qvm images prune'],
  monitor: [
    'qvm monitor web info usernet',
    'qvm monitor --socket /tmp/t/mon.sock hostfwd_add tcp::10080-:80',
    `qvm monitor --socket /tmp/t/qmp.sock '{"execute": "query-status"}'`,
  ],
  console: [
    'qvm console web',
    'qvm console --socket /tmp/t/mon.sock',
    "echo 'info status' | qvm console web     # one command per line; exit 1 if one failed",
  ],
  exec: [
    'qvm exec dev -- systemctl is-system-running',
    "qvm exec dev -- sh -c 'journalctl -b | tail'",
    'tar c src | qvm exec dev -- tar x -C /tmp   # piped stdin reaches the command',
  ],
  screenshot: ['qvm screenshot web', 'qvm screenshot web --output boot.png'],
  vnc: ['qvm vnc web', 'qvm vnc web --tunnel 5901                # then a VNC viewer on 127.0.0.1:5901'],
  export: [
    'qvm export --to nomad demo | nomad job run -json -',
    'qvm export --to nomad -o jobs/ --artifact-base https://files.example.com/qvm',
    'qvm export --to kubevirt --registry registry.example.com/qvm --ssh-key ~/.ssh/id_ed25519.pub | kubectl apply -f -',
  ],
  init: [
    'qvm init',
    'qvm init --image debian-12             # a development VM from Debian 12 cloud image',
    'qvm init -f vms/dev.yaml --image debian-12',
  ],
  completion: [
    'source <(qvm completion bash)',
    'qvm completion zsh > ~/.zfunc/_qvm         # a folder of $fpath',
    'qvm completion fish > ~/.config/fish/completions/qvm.fish',
  ],
  schema: [
    'qvm schema > qvm.schema.json           # then: # yaml-language-server: $schema=./qvm.schema.json',
    'qvm schema | jq \'.["$defs"].vm.properties | keys\'',
  ],
  explain: [
    'qvm explain vms.ready.http',
    'qvm explain disk.size                  # a VM field needs no vms.<name>. in front',
    'qvm explain vms --recursive            # every field of the manifest, as a tree',
  ],
};

/** The path of a command as HELP_EXAMPLES keys it: `images prune`, '' for qvm itself. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Adds its examples to the end of the help of the command and of each of its subcommands. */
export function addExamples(command: Command): void {
  const examples = HELP_EXAMPLES[commandPath(command)];
  if (examples) command.addHelpText('after', `\nExamples:\n${examples.map((e) => `  ${e}`).join('\n')}`);
  for (const sub of command.commands) addExamples(sub);
}
