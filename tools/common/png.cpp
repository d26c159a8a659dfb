// PNG writer over libpng: see png.h.
#include "tools/common/png.h"

#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "engine/file_mode.h"
#include "weights-convert/interrupt_cleanup.h"

namespace seaopt_tools {

namespace {

struct PngErrorState {
    char message[256] = "";
};

void on_png_error(png_structp png, png_const_charp msg) {
    auto *st = static_cast<PngErrorState *>(png_get_error_ptr(png));
    if (st) std::snprintf(st->message, sizeof st->message, "%s", msg);
    png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

// Encodes into an open file; false with st.message on a libpng error. Kept free of C++ objects with
// destructors between setjmp and the calls that may longjmp.
bool encode(FILE *f, uint32_t width, uint32_t height, const uint8_t *rgb, PngErrorState &st) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, on_png_error, on_png_warning);
    if (!png) {
        std::snprintf(st.message, sizeof st.message, "cannot create the PNG writer");
        return false;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, nullptr);
        std::snprintf(st.message, sizeof st.message, "cannot create the PNG writer");
        return false;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return false;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; ++y) {
        png_write_row(png, const_cast<png_bytep>(rgb + (size_t)y * width * 3));
    }
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return true;
}

}  // namespace

std::string png_output_problem(const std::string &path) { return seaopt::output_path_problem(path); }

void install_png_interrupt_cleanup() { seaopt::convert::install_interrupt_cleanup(); }

bool write_png_rgb(const std::string &path, uint32_t width, uint32_t height, const std::vector<uint8_t> &rgb,
                   std::string &error) {
    if (width == 0 || height == 0 || rgb.size() != (size_t)width * height * 3) {
        error = "cannot write " + path + ": bad image size " + std::to_string(width) + "x" + std::to_string(height);
        return false;
    }
    if (const std::string why = png_output_problem(path); !why.empty()) {
        error = "cannot write the PNG: " + why;
        return false;
    }
    // A new file of its own beside the target (mkstemp: never an existing file), removed on every error and, through
    // its guard, by SIGINT/SIGTERM/SIGHUP/SIGPIPE (the tool installs the handler); renamed onto the target at the end.
    std::string tmp = path + ".tmp.XXXXXX";
    seaopt::convert::DeferInterrupts defer;  // no signal between the file's creation and its guard
    const int fd = seaopt::make_temporary_file(tmp);
    if (fd < 0) {
        error = "cannot create a temporary file " + tmp + ": " + std::strerror(errno);
        return false;
    }
    const seaopt::convert::RemoveOnInterrupt guard(tmp);
    defer.release();
    FILE *f = ::fdopen(fd, "wb");
    if (!f) {
        error = "cannot open " + tmp + ": " + std::strerror(errno);
        ::close(fd);
        ::unlink(tmp.c_str());
        return false;
    }
    PngErrorState st;
    errno = 0;
    bool ok = encode(f, width, height, rgb.data(), st);
    // The first failing call's errno names the reason (a full disk shows at the flush or the close, not before).
    int why = ok ? 0 : errno;
    if (ok && (std::fflush(f) != 0 || std::ferror(f))) {
        ok = false;
        why = errno;
    }
    if (std::fclose(f) != 0 && ok) {
        ok = false;
        why = errno;
    }
    if (!ok) {
        ::unlink(tmp.c_str());
        const std::string reason = why ? std::strerror(why) : "";
        error = "cannot write " + path + ": " +
                (st.message[0] ? std::string("libpng: ") + st.message + (why ? " (" + reason + ")" : std::string())
                               : why ? reason : std::string(std::strerror(EIO)));
        return false;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        error = "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno);
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

void colormap_viridis(float x, uint8_t *rgb) {
    // viridis at 0, 1/8, ..., 1
    static const uint8_t kStops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                         {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                         {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(x > 0.0f)) x = 0.0f;  // NaN too
    if (x > 1.0f) x = 1.0f;
    const float pos = x * 8.0f;
    const int i = std::min(7, (int)pos);
    const float f = pos - (float)i;
    for (int c = 0; c < 3; ++c) {
        const float v = (float)kStops[i][c] + f * ((float)kStops[i + 1][c] - (float)kStops[i][c]);
        rgb[c] = (uint8_t)std::lround(v);
    }
}

}  // namespace seaopt_tools
