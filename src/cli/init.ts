/**
 * `qvm init [--image debian-12]`: a commented starter manifest, as `terraform init`'s and `lima`'s templates
 * give one. It never overwrites a file, and what it writes passes `qvm validate` as it is (tested).
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import { SCHEMA_URL } from '../manifest/schema-fields.js';
import { type Output, writeLine } from './output.js';

/** The images `--image` knows; each a starter for a development VM made from that image. */
export const INIT_IMAGES = ['debian-12'] as const;

/** One dated build of Debian 12's generic cloud image: a dated folder keeps its file, `latest/` does not. */
const DEBIAN_BUILD = '20260923-2610';
/** That file's SHA-512, as the build's SHA512SUMS lists it (also in examples/debian-dev.yaml). */
const DEBIAN_SHA512 =
  '3d94c9dd66d8a283fde060b8810373b7ae04038b956ee00d553d1ae564f6fbdeaa2fd6e7404e87e53348b5a9509170f3ea7c0731ba737590c5c4cb8d559a47f8';
const DEBIAN_FOLDER = `https://cloud.debian.org/images/cloud/bookworm/${DEBIAN_BUILD}`;
const DEBIAN_FILE = `debian-12-genericcloud-amd64-${DEBIAN_BUILD}.qcow2`;

/** The first lines of every starter: the schema for editors (yaml-language-server's modeline). */
function modeline(): string {
  return `# yaml-language-server: $schema=${fileURLToPath(SCHEMA_URL)}`;
}

function starter(): string {
  return `${modeline()}
#
# The VMs of this folder, declared. \`qvm plan\` shows what would change, \`qvm apply\` makes it so, and
# \`qvm explain FIELD\` documents any field (\`qvm explain ready\`). The line above gives editors with
# yaml-language-server completion and documentation from the schema of the qvm that wrote this file.
vms:
  web:
    memory: 1G
    cpus: 2
    # qvm creates a missing disk (qcow2, allocated as the guest writes) and never overwrites a file.
    disk: { path: disks/web.qcow2, size: 8G }
    # Boots Debian's installer: get the netinst ISO (amd64) from https://www.debian.org/CD/netinst/ and save
    # it here. Installing needs a screen: add \`args: [-vnc, "127.0.0.1:1"]\` and connect a VNC viewer to
    # 127.0.0.1:5901. (\`qvm init --image debian-12\` writes a VM made from a cloud image instead.)
    cdrom: iso/debian-12-amd64-netinst.iso
    # Host ports to guest ports. No address means 127.0.0.1 only; changed live on a running VM.
    forwards:
      - tcp::10022-:22 # ssh -p 10022 127.0.0.1
      - { host: 8080, guest: 80 } # http://127.0.0.1:8080/
    # How apply knows the VM is up: a web server answering through the forward on host port 8080. apply
    # waits for it after each start and reports an error after the timeout (the VM stays up): comment it
    # out until the guest is installed and serves HTTP.
    ready:
      http: { port: 8080, path: /, status: 200 }
      timeout: 2m
`;
}

function debianDev(): string {
  return `${modeline()}
#
# A Debian 12 development VM. \`qvm apply\` downloads the image once (into ~/.cache/qvm), makes the VM's disk
# a copy-on-write overlay of it, boots it, and waits until it can log in over SSH; then \`qvm ssh dev\` logs
# in and \`qvm cp\` copies files. \`qvm explain FIELD\` documents any field (\`qvm explain images.sha512\`).
images:
  debian-12:
    # Debian 12's generic cloud image, one dated build. Newer builds are the dated folders of
    # https://cloud.debian.org/images/cloud/bookworm/ (not latest/, whose file changes under the same name).
    url: ${DEBIAN_FOLDER}/${DEBIAN_FILE}
    # Its SHA-512, from the SHA512SUMS file beside it; qvm checks the download against it. For a newer build:
    #   curl -fsSL https://cloud.debian.org/images/cloud/bookworm/BUILD/SHA512SUMS | grep genericcloud-amd64
    sha512: ${DEBIAN_SHA512}
vms:
  dev:
    memory: 2G
    cpus: 2
    image: debian-12
    # The VM's own disk: a qcow2 overlay of the image, grown to this size; the image is never written.
    disk: { path: disks/dev.qcow2, size: 20G }
    # cloud-init user data, run on the first boot; qvm adds the ssh: user and its key to it.
    cloudInit:
      userData: |
        #cloud-config
        package_update: true
        packages: [git, curl]
    # qvm creates this user with a key of its own, and forwards a loopback port to the guest's port 22.
    ssh: { user: dev }
    # Host ports to guest ports. No address means 127.0.0.1 only; changed live on a running VM.
    forwards:
      - { host: 8080, guest: 8080 } # a development server in the guest: http://127.0.0.1:8080/
    # Ready once an SSH login works and cloud-init has finished: apply returns then.
    ready: { ssh: true, timeout: 10m }
`;
}

/** The starter manifest's text: the default one, or a development VM made from IMAGE. */
export function initText(image?: (typeof INIT_IMAGES)[number]): string {
  return image === 'debian-12' ? debianDev() : starter();
}

export function initCommand(flags: { file: string; image?: (typeof INIT_IMAGES)[number] }, output: Output) {
  const file = flags.file;
  if (isFolder(file))
    throw new UsageError(
      `${file} is a folder: name the manifest file to write, e.g. -f ${path.join(file, 'qvm.yaml')}`,
    );
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  try {
    // `wx`: fails when the file exists, even if it appeared since a check, so nothing is ever overwritten.
    writeFileSync(file, initText(flags.image), { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw new UsageError(
        `${file} already exists; qvm init never overwrites a file (remove it, or use -f NEW.yaml)`,
      );
    throw error;
  }
  const vm = flags.image ? 'dev' : 'web';
  writeLine(output.out, `wrote ${file}: one VM, ${vm}. Next: qvm validate, qvm plan, qvm apply.`);
  return 0;
}

function isFolder(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}
