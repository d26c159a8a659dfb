// How the writers make their output files. The permission bits a new file would get from open(path, O_CREAT, 0666):
// 0666 & ~umask. The writers create their temporary with mkstemp (0600) and rename it onto the target; they give it
// these bits first, so that the umask is honoured both ways (a private umask keeps a saved prompt private; the usual
// 022 makes a model readable by others).
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fstream>
#include <string>

namespace seaopt {

// The umask comes from /proc/self/status ("Umask:", Linux 4.7+): calling umask() to read it would change it for every
// thread for a moment. Where that line is missing, 022.
inline mode_t new_file_mode() {
    mode_t mask = 022;
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("Umask:", 0) == 0) {
            mask = (mode_t)std::stoul(line.substr(6), nullptr, 8);
            break;
        }
    }
    return 0666 & ~mask;
}

// mkstemp(path) (path ends in "XXXXXX", filled in on return) with the new file given new_file_mode()'s bits: the
// temporary that a writer renames onto its target. Returns the descriptor, or -1 with errno set.
inline int make_temporary_file(std::string &path) {
    const int fd = ::mkstemp(path.data());
    if (fd >= 0) ::fchmod(fd, new_file_mode());
    return fd;
}

// Why `path` may not be the target of a write-then-rename, or "" where it may: something that exists there and is not
// a regular file (a directory; a device such as /dev/null or /dev/full, a FIFO, a socket: renaming onto it would
// replace the device node itself, for root even /dev/null). Links are followed: a link to a regular file is replaced
// by the new file, as a plain rename does; a dangling one too.
inline std::string output_path_problem(const std::string &path) {
    if (path.empty()) return "no output path given";
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return "";  // nothing there (or a dangling link): created
    if (S_ISREG(st.st_mode)) return "";
    if (S_ISDIR(st.st_mode)) return "'" + path + "' is a directory; name a file";
    return "'" + path +
           "' exists and is not a regular file (a device, FIFO or socket): it would be replaced, not written";
}

}  // namespace seaopt
