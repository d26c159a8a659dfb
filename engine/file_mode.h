// The permission bits a new file would get from open(path, O_CREAT, 0666): 0666 & ~umask. The writers create their
// temporary with mkstemp (0600) and rename it onto the target; they give it these bits first, so that the umask is
// honoured both ways (a private umask keeps a saved prompt private; the usual 022 makes a model readable by others).
#pragma once

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

}  // namespace seaopt
