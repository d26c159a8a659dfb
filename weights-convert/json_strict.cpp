#include "weights-convert/json_strict.h"

#include <vector>

#include "engine/error.h"
#include "weights-convert/byte_source.h"

namespace seaopt::convert {
namespace {

using json = nlohmann::json;

// A SAX handler that builds the DOM itself, so that it can refuse duplicate keys and deep nesting
// as they are met (nlohmann's own DOM parser keeps the last of duplicate keys).
class StrictDomBuilder : public nlohmann::json_sax<json> {
public:
    json root;
    std::string error;  // first problem, empty if none

    bool null() override { return add(json(nullptr)); }
    bool boolean(bool v) override { return add(json(v)); }
    bool number_integer(number_integer_t v) override { return add(json(v)); }
    bool number_unsigned(number_unsigned_t v) override { return add(json(v)); }
    bool number_float(number_float_t v, const string_t &) override { return add(json(v)); }
    bool string(string_t &v) override { return add(json(std::move(v))); }
    bool binary(binary_t &) override { return fail("binary values are not JSON"); }
    bool start_object(std::size_t) override { return open(json::object()); }
    bool start_array(std::size_t) override { return open(json::array()); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool key(string_t &k) override {
        json *obj = stack_.back();
        if (obj->contains(k)) return fail("duplicate key '" + k + "'");
        keys_.back() = std::move(k);
        return true;
    }
    bool parse_error(std::size_t position, const std::string &, const nlohmann::detail::exception &ex) override {
        std::string msg = ex.what();
        // nlohmann's message starts with "[json.exception.parse_error.101] parse error at ...".
        if (const size_t p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
        return fail("not valid JSON (byte " + std::to_string(position) + "): " + msg);
    }

private:
    std::vector<json *> stack_;       // open containers, innermost last
    std::vector<std::string> keys_;   // pending key per open container (unused for arrays)

    bool fail(const std::string &m) {
        if (error.empty()) error = m;
        return false;
    }
    json *insert(json v) {
        if (stack_.empty()) {
            root = std::move(v);
            return &root;
        }
        json *top = stack_.back();
        if (top->is_array()) {
            top->push_back(std::move(v));
            return &top->back();
        }
        json &slot = (*top)[keys_.back()];
        slot = std::move(v);
        return &slot;
    }
    bool add(json v) {
        insert(std::move(v));
        return true;
    }
    bool open(json v) {
        if ((int)stack_.size() >= kMaxJsonDepth) {
            return fail("nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
        }
        stack_.push_back(insert(std::move(v)));
        keys_.emplace_back();
        return true;
    }
    bool close() {
        stack_.pop_back();
        keys_.pop_back();
        return true;
    }
};

}  // namespace

json parse_json_strict(const char *data, size_t size, const std::string &what) {
    StrictDomBuilder b;
    bool ok = false;
    try {
        ok = json::sax_parse(data, data + size, &b, nlohmann::detail::input_format_t::json, true, false);
    } catch (const std::exception &e) {  // defensive: sax_parse reports through parse_error
        if (b.error.empty()) b.error = std::string("not valid JSON: ") + e.what();
    }
    if (!ok || !b.error.empty()) throw_model_format(what + ": " + (b.error.empty() ? "not valid JSON" : b.error));
    return std::move(b.root);
}

json read_json_file(const std::string &path, const std::string &what, size_t max_bytes) {
    FileSource f(path, what);
    if (f.size() > max_bytes) {
        throw_model_format(what + ": file is " + std::to_string(f.size()) + " bytes; at most " +
                           std::to_string(max_bytes) + " are accepted");
    }
    const std::vector<uint8_t> bytes = f.read_vec(0, (size_t)f.size());
    return parse_json_strict(reinterpret_cast<const char *>(bytes.data()), bytes.size(), what);
}

const char *json_type_words(const json &v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number with a fraction";
    default: return "an unsupported JSON value";
    }
}

}  // namespace seaopt::convert
