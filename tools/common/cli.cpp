#include "tools/common/cli.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "tools/common/files.h"

namespace seaopt_tools {

CLI::Option *add_check_tensors_option(CLI::App &app, bool &check) {
    return app.add_flag("--check-tensors", check,
                        "scan every weight for NaN and Inf while loading (a slower load; names the first bad tensor)");
}

std::string default_device() { return seaopt_supports_cuda() ? "cuda" : "cpu"; }

CLI::Option *add_device_option(CLI::App &app, std::string &device) {
    return app
        .add_option("--device", device,
                    "where to run: cuda (the GPU; an error if none is usable), cpu (the fp32 reference engine) or auto "
                    "(the GPU if one is usable, else the CPU with a warning). Default: cuda in builds with CUDA, cpu "
                    "otherwise; env SEAOPT_ARG_DEVICE")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->envname("SEAOPT_ARG_DEVICE");
}

seaopt_device device_from_string(const std::string &device) {
    static const std::map<std::string, seaopt_device> devices = {
        {"auto", SEAOPT_DEVICE_AUTO}, {"cpu", SEAOPT_DEVICE_CPU}, {"cuda", SEAOPT_DEVICE_CUDA}};
    return devices.at(device);
}

void add_attention_options(CLI::App &app, AttentionOptions &opt, bool allow_list) {
    CLI::Option *attention =
        app.add_option("--attention", opt.attention,
                       std::string("attention: dense (exact causal attention) or sea (SEA sparse attention with its "
                                   "learned estimator; needs a model converted with seaopt-convert --sea; CPU and CUDA "
                                   "engines)") +
                           (allow_list ? "; a comma-separated list runs every test with each, e.g. dense,sea" : ""));
    if (!allow_list) attention->check(CLI::IsMember({"dense", "sea"}));
    app.add_option("--sea-layers", opt.sea_layers,
                   "with --attention sea: the layers that run SEA, 0-based indices and ranges such as 2-23 or "
                   "0,3,5-7 (default: every layer); the other layers run dense attention")
        ->check(CLI::Validator(
            [](std::string &v) {
                // An empty list would mean "every layer" to the library (NULL or ""): a mistake here, not a choice.
                return v.empty() ? std::string("an empty list: name the layers (e.g. 2-23), or leave the flag out for "
                                               "every layer")
                                 : std::string();
            },
            "LIST"));
    app.add_option("--sea-k", opt.sea_k,
                   "with --attention sea: SEA's sparsity budget k, about k keys per query per head "
                   "(0 = the model's, set by seaopt-convert --sea-k)")
        ->check(CLI::Range(0, 1 << 24));
}

std::vector<std::string> split_list(const std::string &text) {
    std::vector<std::string> items;
    std::stringstream list(text);
    std::string item;
    while (std::getline(list, item, ',')) items.push_back(item);
    return items;
}

std::string attention_list(const AttentionOptions &opt, std::vector<AttentionOptions> &out) {
    out.clear();
    for (const std::string &item : split_list(opt.attention)) {
        if (item != "dense" && item != "sea") return "--attention: '" + item + "' is not dense or sea";
        AttentionOptions a = opt;
        a.attention = item;
        if (item == "dense") a.sea_layers.clear(), a.sea_k = 0;
        out.push_back(a);
    }
    if (out.empty()) return "--attention: empty list (dense, sea or dense,sea)";
    return "";
}

std::string check_attention_options(const AttentionOptions &opt) {
    if (opt.attention.find("sea") == std::string::npos && (!opt.sea_layers.empty() || opt.sea_k != 0)) {
        return std::string(opt.sea_layers.empty() ? "--sea-k" : "--sea-layers") + " needs --attention sea";
    }
    return "";
}

void apply_attention_options(const AttentionOptions &opt, seaopt_context_params &params) {
    const bool sea = opt.attention == "sea";
    params.attention = sea ? SEAOPT_ATTENTION_SEA : SEAOPT_ATTENTION_DENSE;
    params.sea_layers = sea && !opt.sea_layers.empty() ? opt.sea_layers.c_str() : nullptr;
    params.sea_k = sea ? opt.sea_k : 0;
}

std::string attention_label(const AttentionOptions &opt) {
    if (opt.attention != "sea") return "dense";
    std::string details;
    if (!opt.sea_layers.empty()) details = "layers " + opt.sea_layers;
    if (opt.sea_k != 0) details += (details.empty() ? "" : ", ") + std::string("k ") + std::to_string(opt.sea_k);
    return details.empty() ? "sea" : "sea (" + details + ")";
}

void add_prompt_options(CLI::App &app, PromptOptions &opt, const std::string &text_help, const std::string &file_help) {
    opt.text_opt = app.add_option("-p,--prompt", opt.text, text_help);
    opt.file_opt = app.add_option("-f,--file", opt.file, file_help);
    opt.text_opt->excludes(opt.file_opt);
}

bool PromptOptions::read(std::string &out, std::string &error) const {
    if (from_file()) return read_file_bytes(file, out, error);
    out = text;
    return true;
}

}  // namespace seaopt_tools
