// PNG output for the tools (Debian's libpng): 8-bit RGB, written to a temporary file of its own beside the target
// and renamed over it once complete, so a failure never leaves a half-written file under the target's name, and the
// temporary is removed on every error and by an interrupting signal.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seaopt_tools {

// rgb: height rows of width pixels, 3 bytes each (R, G, B). False with a message naming the path on failure.
bool write_png_rgb(const std::string &path, uint32_t width, uint32_t height, const std::vector<uint8_t> &rgb,
                   std::string &error);

// Why `path` cannot be a PNG's target (it exists and is a directory, a device, a FIFO: renaming onto it would
// replace it), or "" where it can. write_png_rgb checks it too; a tool asks first to fail before its work.
std::string png_output_problem(const std::string &path);

// Makes SIGINT, SIGTERM, SIGHUP and SIGPIPE remove write_png_rgb's temporary file before the process ends by them.
void install_png_interrupt_cleanup();

// A viridis-like colormap (dark purple -> blue -> green -> yellow), piecewise linear through 9 of viridis's
// colours; x is clamped to [0, 1]. Writes 3 bytes.
void colormap_viridis(float x, uint8_t *rgb);

}  // namespace seaopt_tools
