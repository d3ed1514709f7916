/** Direct kernel boot: `initrd` and `append` mean nothing without `kernel`. */
import type { VmCheck } from '../document.js';

/** `initrd` and `append` need `kernel`. */
export const checkKernelBoot: VmCheck = (doc) =>
  doc.raw.kernel !== undefined
    ? []
    : (['initrd', 'append'] as const)
        .filter((field) => doc.raw[field] !== undefined)
        .map((field) => doc.problem([field], 'needs `kernel` (direct kernel boot)'));
