// What a device implements to sit behind the vhost-user back end (rust-vmm's
// VhostUserBackend trait, in small): its features, its config space, and what to do when a
// queue has buffers. The device never sees the socket.
import type { VhostMemoryMap } from './memory-map.js';
import type { DescriptorChain } from './split-virtqueue.js';

/** A running queue, as the device sees it. */
export interface DeviceQueue {
  readonly index: number;
  /** The next chain, or null when the ring is empty (or the queue stopped meanwhile). Throws VirtqueueError on a bad chain. */
  pop(): DescriptorChain | null;
  /** Returns a chain with `written` response bytes. */
  push(head: number, written: number): void;
  /** Interrupts the driver if it asked to be (EVENT_IDX or NO_INTERRUPT). */
  notify(): void;
  /**
   * False once the ring was stopped or reset after this queue was handed out (GET_VRING_BASE,
   * RESET_DEVICE: a guest reboot, QEMU leaving): a chain popped before then must not be
   * answered, its buffers may be unmapped and nobody waits for the answer.
   */
  readonly live: boolean;
}

export interface VhostUserDevice {
  /** Number of virtqueues (virtio-gpu: 2, control and cursor). */
  readonly queueCount: number;
  /** Largest ring the device accepts. */
  readonly maxQueueSize: number;
  /** Device-specific virtio feature bits to offer (the back end adds VERSION_1, ring features, PROTOCOL_FEATURES). */
  readonly features: bigint;
  /** The config space (at most 256 bytes); GET_CONFIG reads from it. */
  readConfig(offset: number, size: number): Uint8Array;
  /** SET_CONFIG; throw to refuse. */
  writeConfig(offset: number, data: Uint8Array): void;
  /** The driver's acked feature bits (SET_FEATURES). */
  setFeatures(features: bigint): void;
  /** Guest RAM changed (null: gone, after a reset or disconnect). */
  setMemory(memory: VhostMemoryMap | null): void;
  /** A queue has buffers. The back end never runs two of these for one queue at once. */
  processQueue(queue: DeviceQueue): Promise<void> | void;
  /**
   * A request the generic layer does not know (GPU_SET_SOCKET). Owns `fds`. Returns the reply
   * payload, or undefined when the request has none; throws to refuse it.
   */
  handleDeviceRequest(request: number, payload: Uint8Array, fds: number[]): Uint8Array | undefined;
  /** RESET_DEVICE, RESET_OWNER or disconnect: drop all guest state (resources, scanouts). */
  reset(): void;
}
