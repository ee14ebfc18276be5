// Where the sidecar's surfaces come from. A source reports surfaces appearing, getting a new
// buffer, being drawn into and going away; the sidecar (server.ts) turns that into what its
// peers see. Two sources exist (gpu-source.ts: the vhost-user-gpu back end's scanouts;
// framebuffer-source.ts: framebuffers described over guest memory); a test or another glue can
// write its own.
import type { ExportedSurface } from '../../lib/guest/surface.js';
import type { Rect } from './messages.js';

/**
 * What a source reports to. `key` is the source's own name for a surface (unique within the
 * source). The ExportedSurface stays the source's: it must stay open until the next replace or
 * withdraw of that key (or the source's close); the sidecar dups its fd for what it sends.
 */
export interface SurfaceSink {
  /** A surface appeared. */
  add(key: string, name: string, surface: ExportedSurface): void;
  /** The surface has a new buffer (a new resource on the scanout, a new mode, a re-export). */
  replace(key: string, surface: ExportedSurface): void;
  /** The guest says it drew into these rectangles (in the surface's pixels). */
  damage(key: string, rects: readonly Rect[]): void;
  /** The surface is gone (scanout disabled, QEMU gone, framebuffer removed). */
  withdraw(key: string): void;
  /** Something failed that did not stop the source (an export refused). */
  warn(message: string): void;
}

export interface SurfaceSource {
  /** Short kind shown to peers in list(): "vhost-user-gpu", "framebuffer". */
  readonly kind: string;
  /** For logs: what it is attached to. */
  readonly description: string;
  /** Starts reporting: an add for every surface it has now, then changes as they happen. Called once. */
  attach(sink: SurfaceSink): void;
  /** Stops reporting and releases what the source owns (its surfaces, and whatever it was given to own). */
  close(): Promise<void>;
}
