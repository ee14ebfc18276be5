// draw-fb: draws a known picture into /dev/fb0 and says on stdout (the serial console) what
// it drew, so the host can compare the scanout's pixels with it. Static, no libraries.
// Usage: draw-fb [FB [PICTURE]]
//
// The pictures, in XRGB8888 (vm/gpu-guest.ts has the same formulas):
// - gradient-xor (default): pixel (x, y) = 0xff000000 | (x & 0xff) << 16 | (y & 0xff) << 8 |
//   ((x ^ y) & 0xff), i.e. a red gradient across, a green one down and an xor pattern in blue;
// - gradient-xor-inverted: the same with every colour bit flipped, so it differs from the first
//   in every pixel (a later boot's picture is told from an earlier one's by content).
// The checksum is FNV-1a over the visible rows (width × 4 bytes each, stride padding excluded).
#include <fcntl.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static uint32_t pixel(uint32_t x, uint32_t y, uint32_t flip) {
  return (0xff000000u | (x & 0xff) << 16 | (y & 0xff) << 8 | ((x ^ y) & 0xff)) ^ flip;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "/dev/fb0";
  const char *picture = argc > 2 ? argv[2] : "gradient-xor";
  uint32_t flip;
  if (!strcmp(picture, "gradient-xor")) flip = 0;
  else if (!strcmp(picture, "gradient-xor-inverted")) flip = 0x00ffffffu;
  else {
    printf("draw-fb: unknown picture %s\n", picture);
    return 1;
  }
  int fd = open(path, O_RDWR);
  if (fd < 0) {
    printf("draw-fb: open %s failed: %m\n", path);
    return 1;
  }
  struct fb_var_screeninfo var;
  struct fb_fix_screeninfo fix;
  if (ioctl(fd, FBIOGET_VSCREENINFO, &var) || ioctl(fd, FBIOGET_FSCREENINFO, &fix)) {
    printf("draw-fb: FBIOGET_*SCREENINFO failed: %m\n");
    return 1;
  }
  if (var.bits_per_pixel != 32) {
    printf("draw-fb: %u bits per pixel, only 32 is drawn\n", var.bits_per_pixel);
    return 1;
  }
  size_t size = (size_t)fix.line_length * var.yres;
  uint8_t *fb = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (fb == MAP_FAILED) {
    printf("draw-fb: mmap failed: %m\n");
    return 1;
  }
  uint64_t hash = 0xcbf29ce484222325ull;
  for (uint32_t y = 0; y < var.yres; y++) {
    uint32_t *row = (uint32_t *)(fb + (size_t)y * fix.line_length);
    for (uint32_t x = 0; x < var.xres; x++) {
      uint32_t p = pixel(x, y, flip);
      row[x] = p;
      for (int b = 0; b < 4; b++) {
        hash ^= (p >> (8 * b)) & 0xff;
        hash *= 0x100000001b3ull;
      }
    }
  }
  // fbdev on virtio-gpu flushes written pages from a deferred worker; msync makes it prompt.
  msync(fb, size, MS_SYNC);
  printf("draw-fb: drew %ux%u stride %u format xrgb8888 picture %s fnv1a %016llx\n", var.xres, var.yres, fix.line_length, picture,
         (unsigned long long)hash);
  fflush(stdout);
  return 0;
}
