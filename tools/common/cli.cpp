#include "tools/common/cli.h"

#include <cstdio>
#include <map>

namespace seaopt_tools {

bool parse_command_line(CLI::App &app, int argc, char **argv, int *exit_status) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp &e) {
        *exit_status = app.exit(e);
        return false;
    } catch (const CLI::ParseError &e) {
        std::fprintf(stderr, "%s: error: %s\nRun with --help for more information.\n", app.get_name().c_str(),
                     e.what());
        *exit_status = 1;
        return false;
    }
    return true;
}

CLI::Option *add_device_option(CLI::App &app, std::string &device) {
    return app.add_option("--device", device, "where to run: auto (the GPU if there is one), cpu or cuda")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
}

seaopt_device device_from_string(const std::string &device) {
    static const std::map<std::string, seaopt_device> devices = {
        {"auto", SEAOPT_DEVICE_AUTO}, {"cpu", SEAOPT_DEVICE_CPU}, {"cuda", SEAOPT_DEVICE_CUDA}};
    return devices.at(device);
}

}  // namespace seaopt_tools
