// PNG output for the tools (Debian's libpng): 8-bit RGB, written to a temporary name beside the target and
// renamed over it once complete, so a failure never leaves a half-written file under the target's name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seaopt_tools {

// rgb: height rows of width pixels, 3 bytes each (R, G, B). False with a message naming the path on failure.
bool write_png_rgb(const std::string &path, uint32_t width, uint32_t height, const std::vector<uint8_t> &rgb,
                   std::string &error);

// A viridis-like colormap (dark purple -> blue -> green -> yellow), piecewise linear through 9 of viridis's
// colours; x is clamped to [0, 1]. Writes 3 bytes.
void colormap_viridis(float x, uint8_t *rgb);

}  // namespace seaopt_tools
