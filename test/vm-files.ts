// Which VM suite files a kernel's run of `npm test` takes (test/run-suites.ts).
//
// The vhost-user-gpu end-to-end files boot guests nested under TCG inside the test VM (measured
// on a loaded 2-core machine: ~2.5–3.5 min for the GPU guest kernel's three boots, ~2.5 min for
// Debian's 6.1): they run in the VM suite of one kernel only (GUEST_DMABUF_GPU_E2E_KERNEL, default
// 6.12). What they test is the back end, QEMU and the nested guest's driver, the same whichever
// kernel the test VM runs; the udmabuf paths they reach are the driver suites', which run on every
// kernel. The other kernels' runs leave the files out of their file list: nothing is skipped
// inside a run, and nothing counts as passed that did not run. qemu-blob-udmabuf (one nested boot,
// QEMU's in-process virtio-gpu on /dev/udmabuf) runs on every kernel: which driver QEMU gets is
// the kernel's (ours on 6.1, the in-tree one on 6.12), so its outcome differs by kernel.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../vm/paths.js';

export const GPU_E2E_FILES: readonly string[] = ['test/vm/vhost-user-gpu-e2e.test.ts', 'test/vm/vhost-user-gpu-drm.test.ts', 'test/vm/vhost-user-gpu-debian.test.ts', 'test/vm/sidecar-gpu-e2e.test.ts'];
export const GPU_E2E_KERNEL = process.env.GUEST_DMABUF_GPU_E2E_KERNEL ?? '6.12';

/**
 * The files (or pattern) for `kernel`'s VM run: `glob` itself on GPU_E2E_KERNEL or when the
 * pattern was given (`givenPattern`: taken as it is), else every test/vm file but the GPU
 * end-to-end ones.
 */
export function vmFiles(kernel: string, glob: string, givenPattern: boolean, e2eKernel: string = GPU_E2E_KERNEL): string[] {
  if (kernel === e2eKernel || givenPattern) return [glob];
  return readdirSync(join(PROJECT_ROOT, 'test', 'vm'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `test/vm/${f}`)
    .filter((f) => !GPU_E2E_FILES.includes(f))
    .sort();
}
