// draw-drm: shows a DRM dumb buffer on virtio-gpu's first connector and draws into it on the
// host's command, one command per line on stdin (the serial console), one report line each on
// stdout. Unlike /dev/fb0 (whose writes Linux's fbdev emulation copies and transfers from a
// worker, whole damaged lines at a time), a dumb buffer gives the host's tests control over what
// reaches the device: the guest writes the pixels, and only DIRTYFB sends TRANSFER_TO_HOST_2D for
// the rectangle named, then RESOURCE_FLUSH. Destroying it sends RESOURCE_UNREF. Static, no libdrm.
// Usage: draw-drm [CARD]   (default /dev/dri/card0)
//
// Commands:
//   show PICTURE     create the buffer and set it on the CRTC the first time; draw PICTURE into
//                    it and mark it all dirty
//   draw PICTURE     write PICTURE's pixels into the buffer only (nothing reaches the device)
//   dirty X Y W H    DIRTYFB with that one rectangle (TRANSFER_TO_HOST_2D of it, then a flush)
//   move N           N frames of the moving picture (frame i = `moving-i`), each drawn whole and
//                    dirtied whole; the last one stays shown
//   run SECONDS      frames of the moving picture, as fast as they go, for SECONDS
//   destroy          unmap, remove the framebuffer (the CRTC goes dark), destroy the dumb buffer
//   quit             exit (the card's fd closes: fbcon takes the display back)
//
// Pictures (XRGB8888; vm/gpu-guest.ts has the same formulas): gradient-xor,
// gradient-xor-inverted (every colour bit flipped) and moving-N: gradient-xor moved left by 4·N
// pixels, pixel (x, y) = gradient-xor's at (x + 4N, y).
#include <drm/drm.h>
#include <drm/drm_fourcc.h>
#include <drm/drm_mode.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct picture {
  uint32_t flip;  // XORed into every pixel
  uint32_t shift; // x offset
};

static int card = -1;
static uint32_t crtc_id, connector_id, fb_id, handle;
static struct drm_mode_modeinfo mode;
static uint32_t width, height, pitch;
static uint64_t size;
static uint8_t *pixels;

static int parse_picture(const char *name, struct picture *p) {
  unsigned frame;
  char end;
  if (!strcmp(name, "gradient-xor")) *p = (struct picture){0, 0};
  else if (!strcmp(name, "gradient-xor-inverted")) *p = (struct picture){0x00ffffffu, 0};
  else if (sscanf(name, "moving-%u%c", &frame, &end) == 1) *p = (struct picture){0, 4u * frame};
  else return -1;
  return 0;
}

// One row's 256-pixel period, then copied along the row: the frames of `run` cost what the
// memory writes cost, not a formula per pixel (this runs nested under TCG).
static void draw(struct picture p) {
  uint32_t period[256];
  for (uint32_t y = 0; y < height; y++) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t x = i + p.shift;
      period[i] = (0xff000000u | (x & 0xff) << 16 | (y & 0xff) << 8 | ((x ^ y) & 0xff)) ^ p.flip;
    }
    uint32_t *row = (uint32_t *)(pixels + (size_t)y * pitch);
    for (uint32_t x = 0; x < width; x += 256) memcpy(row + x, period, 4 * (width - x < 256 ? width - x : 256));
  }
}

static int dirty(uint32_t x, uint32_t y, uint32_t w, uint32_t h) {
  struct drm_clip_rect clip = {.x1 = x, .y1 = y, .x2 = x + w, .y2 = y + h};
  struct drm_mode_fb_dirty_cmd cmd = {.fb_id = fb_id, .num_clips = 1, .clips_ptr = (uintptr_t)&clip};
  return ioctl(card, DRM_IOCTL_MODE_DIRTYFB, &cmd);
}

// The first connected connector, its preferred (first) mode and a CRTC its encoder can drive.
static int find_output(void) {
  uint32_t crtcs[8], connectors[8];
  struct drm_mode_card_res res = {0};
  if (ioctl(card, DRM_IOCTL_MODE_GETRESOURCES, &res)) return -1;
  if (res.count_crtcs == 0 || res.count_connectors == 0 || res.count_crtcs > 8 || res.count_connectors > 8) {
    errno = ENODEV;
    return -1;
  }
  res = (struct drm_mode_card_res){.crtc_id_ptr = (uintptr_t)crtcs, .count_crtcs = 8, .connector_id_ptr = (uintptr_t)connectors, .count_connectors = 8};
  if (ioctl(card, DRM_IOCTL_MODE_GETRESOURCES, &res)) return -1;
  for (uint32_t i = 0; i < res.count_connectors; i++) {
    struct drm_mode_modeinfo modes[64];
    struct drm_mode_get_connector conn = {.connector_id = connectors[i]};
    if (ioctl(card, DRM_IOCTL_MODE_GETCONNECTOR, &conn)) return -1;
    if (conn.connection != 1 || conn.count_modes == 0) continue;
    uint32_t count = conn.count_modes < 64 ? conn.count_modes : 64;
    conn = (struct drm_mode_get_connector){.connector_id = connectors[i], .modes_ptr = (uintptr_t)modes, .count_modes = count};
    if (ioctl(card, DRM_IOCTL_MODE_GETCONNECTOR, &conn)) return -1;
    mode = modes[0];
    connector_id = connectors[i];
    crtc_id = crtcs[0];
    return 0;
  }
  errno = ENODEV;
  return -1;
}

static int create(void) {
  if (find_output()) return -1;
  struct drm_mode_create_dumb dumb = {.width = mode.hdisplay, .height = mode.vdisplay, .bpp = 32};
  if (ioctl(card, DRM_IOCTL_MODE_CREATE_DUMB, &dumb)) return -1;
  handle = dumb.handle;
  width = dumb.width;
  height = dumb.height;
  pitch = dumb.pitch;
  size = dumb.size;
  struct drm_mode_fb_cmd2 fb = {.width = width, .height = height, .pixel_format = DRM_FORMAT_XRGB8888, .handles = {handle}, .pitches = {pitch}};
  if (ioctl(card, DRM_IOCTL_MODE_ADDFB2, &fb)) return -1;
  fb_id = fb.fb_id;
  struct drm_mode_map_dumb map = {.handle = handle};
  if (ioctl(card, DRM_IOCTL_MODE_MAP_DUMB, &map)) return -1;
  pixels = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, card, map.offset);
  if (pixels == MAP_FAILED) {
    pixels = NULL;
    return -1;
  }
  memset(pixels, 0, size);
  struct drm_mode_crtc set = {.crtc_id = crtc_id, .fb_id = fb_id, .set_connectors_ptr = (uintptr_t)&connector_id, .count_connectors = 1, .mode = mode, .mode_valid = 1};
  return ioctl(card, DRM_IOCTL_MODE_SETCRTC, &set);
}

static int destroy(void) {
  if (munmap(pixels, size)) return -1;
  pixels = NULL;
  if (ioctl(card, DRM_IOCTL_MODE_RMFB, &fb_id)) return -1;
  struct drm_mode_destroy_dumb dumb = {.handle = handle};
  return ioctl(card, DRM_IOCTL_MODE_DESTROY_DUMB, &dumb);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Frames of the moving picture until `frames` are drawn or `seconds` are up (0: no limit).
static int move(unsigned frames, double seconds) {
  double start = now(), elapsed = 0;
  unsigned i = 0;
  printf("draw-drm: moving\n");
  fflush(stdout);
  for (; (frames == 0 || i < frames) && (seconds == 0 || elapsed < seconds); i++) {
    draw((struct picture){0, 4u * i});
    if (dirty(0, 0, width, height)) return -1;
    elapsed = now() - start;
  }
  printf("draw-drm: moved %u frames in %.3f s last moving-%u\n", i, elapsed, i ? i - 1 : 0);
  return 0;
}

// One line from stdin, a byte at a time: nothing past the newline is taken from the console.
static int read_line(char *line, size_t cap) {
  size_t n = 0;
  for (;;) {
    char c;
    ssize_t r = read(0, &c, 1);
    if (r <= 0) return -1;
    if (c == '\n') break;
    if (c != '\r' && n + 1 < cap) line[n++] = c;
  }
  line[n] = 0;
  return 0;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "/dev/dri/card0";
  card = open(path, O_RDWR | O_CLOEXEC);
  if (card < 0) {
    printf("draw-drm: open %s failed: %m\n", path);
    return 1;
  }
  printf("draw-drm: ready\n");
  fflush(stdout);
  char line[128], word[32], name[64];
  while (read_line(line, sizeof line) == 0) {
    struct picture p;
    unsigned x, y, w, h, n;
    double seconds;
    int failed = 0;
    if (sscanf(line, "%31s", word) != 1) continue;
    if (!strcmp(word, "quit")) break;
    if (strcmp(word, "show") && !pixels && strcmp(word, "destroy")) {
      printf("draw-drm: %s: no buffer yet (show first)\n", word);
    } else if ((!strcmp(word, "show") || !strcmp(word, "draw")) && sscanf(line, "%*s %63s", name) == 1 && !parse_picture(name, &p)) {
      if (!pixels && create()) failed = 1;
      else {
        draw(p);
        if (!strcmp(word, "draw")) printf("draw-drm: drew picture %s\n", name);
        else if (dirty(0, 0, width, height)) failed = 1;
        else printf("draw-drm: shown %ux%u stride %u format xrgb8888 picture %s\n", width, height, pitch, name);
      }
    } else if (!strcmp(word, "dirty") && sscanf(line, "%*s %u %u %u %u", &x, &y, &w, &h) == 4) {
      if (w == 0 || h == 0 || x + w > width || y + h > height) printf("draw-drm: dirty %u %u %u %u is outside %ux%u\n", x, y, w, h, width, height);
      else if (dirty(x, y, w, h)) failed = 1;
      else printf("draw-drm: dirtied %u %u %u %u\n", x, y, w, h);
    } else if (!strcmp(word, "move") && sscanf(line, "%*s %u", &n) == 1 && n > 0) {
      failed = move(n, 0) != 0;
    } else if (!strcmp(word, "run") && sscanf(line, "%*s %lf", &seconds) == 1 && seconds > 0) {
      failed = move(0, seconds) != 0;
    } else if (!strcmp(word, "destroy")) {
      if (!pixels) printf("draw-drm: destroy: no buffer\n");
      else if (destroy()) failed = 1;
      else printf("draw-drm: destroyed\n");
    } else {
      printf("draw-drm: cannot do \"%s\"\n", line);
    }
    if (failed) printf("draw-drm: %s failed: %m\n", word);
    fflush(stdout);
  }
  printf("draw-drm: quit\n");
  return 0;
}
