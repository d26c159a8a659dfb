#include "weights-convert/unpickler.h"

#include <cstring>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "engine/error.h"
#include "weights-convert/byte_source.h"

namespace seaopt::convert {

uint64_t PickledTensor::numel() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;  // checked when the record was made
    return n;
}

namespace {

// ---- values ---------------------------------------------------------------------------------

using Kind = PickleValue::Kind;
using Obj = PickleValue;
using Ref = std::shared_ptr<PickleValue>;

const char *kind_name(Kind k) { return pickle_kind_name(k); }

// The globals a state_dict may name (PickleValue::global_id). Nothing else is ever resolved; in
// Checkpoint mode any other global is Foreign: an inert name.
enum class GlobalId : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType, DTypeConst, Foreign };

GlobalId global_id(const Obj &o) { return (GlobalId)o.global_id; }

// ---- opcodes --------------------------------------------------------------------------------

// Names of the opcodes pickle defines but this interpreter refuses, for the messages.
const char *refused_opcode_name(uint8_t op) {
    switch (op) {
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 'P': return "PERSID";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 0x8b: return "LONG4";
    case 'S': return "STRING";
    case 'V': return "UNICODE";
    case 'F': return "FLOAT";
    case 'g': return "GET";
    case 'p': return "PUT";
    case '2': return "DUP";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8e: return "BINBYTES8";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    default: return nullptr;
    }
}

std::string printable(const std::string &s) {
    std::string out;
    for (unsigned char c : s.substr(0, 120)) {
        if (c >= 0x20 && c < 0x7f && c != '\'') {
            out += (char)c;
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > 120) out += "...";
    return out;
}

class Machine {
public:
    Machine(const uint8_t *data, size_t size, const std::string &what, PickleMode mode)
        : p_(data), n_(size), what_(what), checkpoint_(mode == PickleMode::Checkpoint) {}

    Ref run();

private:
    const uint8_t *p_;
    size_t n_;
    const std::string &what_;
    const bool checkpoint_;  // PickleMode::Checkpoint
    size_t pos_ = 0;
    size_t op_pos_ = 0;  // offset of the opcode being executed
    uint8_t op_ = 0;
    std::vector<Ref> stack_;
    std::vector<size_t> marks_;  // stack sizes at each MARK
    std::unordered_map<uint64_t, Ref> memo_;
    size_t n_objects_ = 0;

    [[noreturn]] void fail(const std::string &m) const {
        throw_model_format(what_ + ": " + m + " (at byte " + std::to_string(op_pos_) + " of the pickle)");
    }

    // -- input --
    const uint8_t *take(uint64_t k) {
        if (k > n_ - pos_) {
            fail("truncated pickle: needs " + std::to_string(k) + " more bytes but only " + std::to_string(n_ - pos_) +
                 " remain");
        }
        const uint8_t *q = p_ + pos_;
        pos_ += (size_t)k;
        return q;
    }
    uint64_t le(size_t k) {
        const uint8_t *q = take(k);
        uint64_t v = 0;
        for (size_t j = k; j-- > 0;) v = (v << 8) | q[j];
        return v;
    }
    std::string line() {  // GLOBAL's newline-terminated arguments
        constexpr size_t kMaxLine = 256;
        for (size_t j = pos_; j < n_ && j - pos_ <= kMaxLine; ++j) {
            if (p_[j] == '\n') {
                std::string s(reinterpret_cast<const char *>(p_ + pos_), j - pos_);
                pos_ = j + 1;
                return s;
            }
        }
        if (n_ - pos_ > kMaxLine) fail("GLOBAL argument longer than " + std::to_string(kMaxLine) + " bytes");
        fail("truncated pickle: GLOBAL argument without its newline");
    }

    // -- objects --
    Ref make(Kind k) {
        if (++n_objects_ > kPickleMaxObjects) {
            fail("pickle has more than " + std::to_string(kPickleMaxObjects) + " objects; not a state_dict this tool reads");
        }
        auto o = std::make_shared<Obj>();
        o->kind = k;
        return o;
    }
    Ref make_int(int64_t v) {
        Ref o = make(Kind::Int);
        o->i = v;
        return o;
    }
    Ref make_str(const uint8_t *q, uint64_t len) {
        Ref o = make(Kind::Str);
        o->s.assign(reinterpret_cast<const char *>(q), (size_t)len);
        return o;
    }
    Ref make_opaque(std::string what) {  // Checkpoint mode: an inert stand-in
        Ref o = make(Kind::Opaque);
        o->s = std::move(what);
        return o;
    }
    // Checkpoint-mode opcodes (see unpickler.h): refused by name in StateDict mode.
    void require_checkpoint_mode(const char *opname) {
        if (checkpoint_) return;
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op_);
        fail(std::string("pickle opcode ") + opname + " (" + hex + ") is not allowed (only the opcodes a PyTorch state_dict needs)");
    }
    // Puts `item` into a container being built: freezes it and accounts for depth.
    void adopt(Obj &container, const Ref &item) {
        if (item.get() == &container) fail(std::string("a ") + kind_name(container.kind) + " that contains itself");
        if (item->kind == Kind::List || item->kind == Kind::Dict || item->is_set) item->frozen = true;
        const int d = item->depth + 1;
        if (d > kPickleMaxDepth) fail("pickle objects nested more than " + std::to_string(kPickleMaxDepth) + " levels deep");
        if (d > container.depth) container.depth = d;
    }
    Ref make_container(Kind k, std::vector<Ref> items) {
        Ref o = make(k);
        o->depth = 1;
        for (const Ref &it : items) adopt(*o, it);
        o->items = std::move(items);
        return o;
    }

    // -- stack --
    size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(Ref r) {
        if (stack_.size() >= kPickleMaxStack) fail("pickle stack deeper than " + std::to_string(kPickleMaxStack) + " entries");
        stack_.push_back(std::move(r));
    }
    Ref pop() {
        if (stack_.size() <= frame_base()) fail("pickle stack underflow");
        Ref r = std::move(stack_.back());
        stack_.pop_back();
        return r;
    }
    Ref &top() {
        if (stack_.size() <= frame_base()) fail("pickle stack underflow");
        return stack_.back();
    }
    std::vector<Ref> pop_mark() {  // the items above the last MARK, and the MARK
        if (marks_.empty()) fail("pickle has no MARK to pop to");
        const size_t base = marks_.back();
        marks_.pop_back();
        std::vector<Ref> items(std::make_move_iterator(stack_.begin() + (ptrdiff_t)base),
                               std::make_move_iterator(stack_.end()));
        stack_.resize(base);
        return items;
    }
    Obj &mutable_target(Ref &r, Kind want, const char *opname) {
        if (r->kind != want) {
            fail(std::string(opname) + " on a " + kind_name(r->kind) + " (expects a " + kind_name(want) + ")");
        }
        if (r->frozen) fail(std::string(opname) + " modifies a " + kind_name(want) + " after it was nested elsewhere");
        return *r;
    }
    void append_items(Obj &list, std::vector<Ref> items) {
        for (const Ref &it : items) adopt(list, it);
        list.items.insert(list.items.end(), std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
    }

    // -- memo --
    void memo_put(uint64_t idx) {
        if (idx >= kPickleMaxMemoIndex) fail("pickle memo index " + std::to_string(idx) + " is too large");
        memo_[idx] = top();
    }
    void memo_get(uint64_t idx) {
        const auto it = memo_.find(idx);
        if (it == memo_.end()) fail("pickle memo index " + std::to_string(idx) + " was never stored");
        push(it->second);
    }

    Ref resolve_global(const std::string &module, const std::string &name);
    Ref reduce(const Ref &callable, const Ref &args);
    Ref persistent_load(const Ref &pid);
    Ref rebuild_tensor(const std::vector<Ref> &a);
};

Ref Machine::resolve_global(const std::string &module, const std::string &name) {
    Ref g = make(Kind::Global);
    g->s = module + "." + name;
    auto set = [&](GlobalId id) {
        g->global_id = (uint8_t)id;
        return g;
    };
    auto storage = [&](bool supported, DType dt) {
        g->storage_supported = supported;
        g->storage_dtype = dt;
        return set(GlobalId::StorageType);
    };
    if (module == "collections" && name == "OrderedDict") return set(GlobalId::OrderedDict);
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") return set(GlobalId::RebuildTensorV2);
    if (module == "torch._utils" && name == "_rebuild_parameter") return set(GlobalId::RebuildParameter);
    if (module == "torch") {
        if (name == "HalfStorage") return storage(true, DType::F16);
        if (name == "FloatStorage") return storage(true, DType::F32);
        if (name == "BFloat16Storage") return storage(true, DType::BF16);
        // Storage classes of dtypes seaopt does not convert: known and inert, refused only if a tensor uses one.
        static const char *const kOtherStorages[] = {"DoubleStorage", "LongStorage", "IntStorage", "ShortStorage",
                                                     "CharStorage", "ByteStorage", "BoolStorage",
                                                     "ComplexFloatStorage", "ComplexDoubleStorage", "UntypedStorage"};
        for (const char *s : kOtherStorages) {
            if (name == s) return storage(false, DType::F32);
        }
        static const char *const kDTypes[] = {"float16", "float32", "bfloat16", "half", "float"};
        for (const char *s : kDTypes) {
            if (name == s) return set(GlobalId::DTypeConst);
        }
    }
    if (module == "torch.storage" && name == "UntypedStorage") return storage(false, DType::F32);
    if (checkpoint_) {
        g->s = printable(module) + "." + printable(name);
        return set(GlobalId::Foreign);  // never resolved: a name only
    }
    fail("pickle asks for global '" + printable(module) + "." + printable(name) +
         "', which is not allowed (only the globals a PyTorch state_dict needs)");
}

Ref Machine::persistent_load(const Ref &pid) {
    // ('storage', storage_type, key, location, numel)
    if (pid->kind != Kind::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::Str ||
        pid->items[0]->s != "storage") {
        fail("persistent id is not a ('storage', type, key, location, numel) tuple");
    }
    const Ref &type = pid->items[1], &key = pid->items[2], &loc = pid->items[3], &numel = pid->items[4];
    if (type->kind != Kind::Global || global_id(*type) != GlobalId::StorageType) {
        fail("persistent id names " + (type->kind == Kind::Global ? "'" + type->s + "'" : std::string("a ") + kind_name(type->kind)) +
             ", not a torch storage class");
    }
    if (key->kind != Kind::Str || key->s.empty()) fail("persistent id has no storage key string");
    if (loc->kind != Kind::Str) fail("persistent id location is not a string");
    if (numel->kind != Kind::Int || numel->i < 0) fail("persistent id numel is not a non-negative integer");
    Ref st = make(Kind::Storage);
    st->s = key->s;
    st->storage_supported = type->storage_supported;
    st->storage_dtype = type->storage_dtype;
    st->storage_numel = (uint64_t)numel->i;
    st->storage_class = type->s;
    return st;
}

Ref Machine::reduce(const Ref &callable, const Ref &args) {
    if (callable->kind != Kind::Global) fail(std::string("REDUCE calls a ") + kind_name(callable->kind));
    if (args->kind != Kind::Tuple) fail("REDUCE arguments are a " + std::string(kind_name(args->kind)) + ", not a tuple");
    const std::vector<Ref> &a = args->items;
    switch (global_id(*callable)) {
    case GlobalId::OrderedDict: {
        if (!a.empty()) fail("collections.OrderedDict is called with arguments; a state_dict pickle passes none");
        Ref d = make(Kind::Dict);
        d->depth = 1;
        return d;
    }
    case GlobalId::RebuildParameter:
        // _rebuild_parameter(data, requires_grad, backward_hooks): the tensor itself.
        if (a.size() != 3 || a[0]->kind != Kind::Tensor) {
            fail("torch._utils._rebuild_parameter expects (tensor, requires_grad, backward_hooks)");
        }
        return a[0];
    case GlobalId::RebuildTensorV2:
        return rebuild_tensor(a);
    case GlobalId::Foreign:
        return make_opaque("an object made by " + callable->s);  // Checkpoint mode only: nothing is called
    case GlobalId::StorageType:
    case GlobalId::DTypeConst:
        break;
    }
    fail("REDUCE calls '" + callable->s + "', which is not callable in a state_dict pickle");
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
Ref Machine::rebuild_tensor(const std::vector<Ref> &a) {
    const char *sig = "torch._utils._rebuild_tensor_v2 expects (storage, storage_offset, size, stride, "
                      "requires_grad, backward_hooks[, metadata])";
    if (a.size() != 6 && a.size() != 7) fail(sig);
    if (a[0]->kind != Kind::Storage || a[1]->kind != Kind::Int || a[2]->kind != Kind::Tuple ||
        a[3]->kind != Kind::Tuple || a[4]->kind != Kind::Bool || a[5]->kind != Kind::Dict ||
        (a.size() == 7 && a[6]->kind != Kind::None && a[6]->kind != Kind::Dict)) {
        fail(sig);
    }
    const Obj &storage = *a[0];
    Ref t = make(Kind::Tensor);
    t->tensor = std::make_shared<PickledTensor>();
    PickledTensor &rec = *t->tensor;
    rec.storage_key = storage.s;
    rec.dtype = storage.storage_dtype;
    rec.storage_numel = storage.storage_numel;
    if (a[1]->i < 0) fail("tensor storage_offset " + std::to_string(a[1]->i) + " is negative");
    rec.storage_offset = (uint64_t)a[1]->i;
    const std::vector<Ref> &size = a[2]->items, &stride = a[3]->items;
    if (size.size() > kPickleMaxRank) fail("tensor has more than " + std::to_string(kPickleMaxRank) + " dimensions");
    if (size.size() != stride.size()) fail("tensor size and stride have different lengths");
    uint64_t numel = 1;
    for (size_t d = 0; d < size.size(); ++d) {
        if (size[d]->kind != Kind::Int || size[d]->i < 0 || stride[d]->kind != Kind::Int || stride[d]->i < 0) {
            fail("tensor size and stride must be non-negative integers");
        }
        rec.shape.push_back((uint64_t)size[d]->i);
        rec.stride.push_back((uint64_t)stride[d]->i);
        if (!checked_mul(numel, rec.shape.back(), &numel)) fail("tensor element count overflows");
    }
    if (!storage.storage_supported) {
        if (!checkpoint_) {
            throw_unsupported(what_ + ": a tensor uses storage " + storage.storage_class +
                              "; seaopt-convert reads float16, bfloat16 and float32 tensors");
        }
        rec.unconvertible = "storage " + storage.storage_class;
    }
    // Contiguous (row-major): each stride is the product of the sizes after it (dims of size
    // 1 may have any stride, as in torch's is_contiguous).
    bool contiguous = true;
    if (numel > 0) {
        uint64_t expect = 1;
        for (size_t d = size.size(); d-- > 0;) {
            if (rec.shape[d] != 1 && rec.stride[d] != expect) contiguous = false;
            expect *= rec.shape[d];
        }
    }
    // The elements it reaches: numel when contiguous, else 1 + sum of (size - 1) * stride.
    uint64_t span = numel;
    if (!contiguous) {
        if (!checkpoint_) {
            throw_unsupported(what_ + ": a tensor of storage '" + printable(rec.storage_key) +
                              "' is not contiguous (stride does not match its shape); save it with .contiguous()");
        }
        if (rec.unconvertible.empty()) rec.unconvertible = "not contiguous";
        span = 1;
        for (size_t d = 0; d < size.size(); ++d) {
            uint64_t reach;
            if (!checked_mul(rec.shape[d] - 1, rec.stride[d], &reach) || !checked_add(span, reach, &span)) {
                fail("tensor strides overflow");
            }
        }
    }
    uint64_t end;
    if (!checked_add(rec.storage_offset, span, &end) || end > rec.storage_numel) {
        fail("tensor elements [" + std::to_string(rec.storage_offset) + " + " + std::to_string(span) +
             "] run past the end of storage '" + printable(rec.storage_key) + "' (" +
             std::to_string(rec.storage_numel) + " elements)");
    }
    return t;
}

Ref Machine::run() {
    while (true) {
        op_pos_ = pos_;
        if (pos_ >= n_) fail("truncated pickle: the stream ends without STOP");
        op_ = p_[pos_++];
        switch (op_) {
        case 0x80: {  // PROTO
            const uint64_t v = le(1);
            if (v > 5) fail("unknown pickle protocol " + std::to_string(v));
            break;
        }
        case 0x95: {  // FRAME: advisory framing of the following bytes
            const uint64_t len = le(8);
            if (len > n_ - pos_) fail("FRAME of " + std::to_string(len) + " bytes runs past the end");
            break;
        }
        case '.': {  // STOP
            Ref r = pop();
            return r;
        }
        case '(':  // MARK
            if (marks_.size() >= kPickleMaxMarks) fail("pickle MARK nesting deeper than " + std::to_string(kPickleMaxMarks));
            marks_.push_back(stack_.size());
            break;
        case '0':  // POP: an item of the current frame, else the MARK itself (as pickle.py)
            if (stack_.size() > frame_base()) {
                stack_.pop_back();
            } else if (!marks_.empty()) {
                marks_.pop_back();
            } else {
                fail("POP on an empty stack");
            }
            break;
        case '1':  // POP_MARK
            pop_mark();
            break;
        case '}': {  // EMPTY_DICT
            Ref d = make(Kind::Dict);
            d->depth = 1;
            push(d);
            break;
        }
        case ']': {  // EMPTY_LIST
            Ref l = make(Kind::List);
            l->depth = 1;
            push(l);
            break;
        }
        case ')':  // EMPTY_TUPLE
            push(make_container(Kind::Tuple, {}));
            break;
        case 't':  // TUPLE
            push(make_container(Kind::Tuple, pop_mark()));
            break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
            const size_t k = (size_t)(op_ - 0x84);
            if (stack_.size() - frame_base() < k) fail("pickle stack underflow");
            std::vector<Ref> items(std::make_move_iterator(stack_.end() - (ptrdiff_t)k),
                                   std::make_move_iterator(stack_.end()));
            stack_.resize(stack_.size() - k);
            push(make_container(Kind::Tuple, std::move(items)));
            break;
        }
        case 'l':  // LIST
            push(make_container(Kind::List, pop_mark()));
            break;
        case 'd': {  // DICT
            std::vector<Ref> items = pop_mark();
            if (items.size() % 2) fail("DICT with an odd number of items");
            push(make_container(Kind::Dict, std::move(items)));
            break;
        }
        case 'a': {  // APPEND
            Ref v = pop();
            append_items(mutable_target(top(), Kind::List, "APPEND"), {std::move(v)});
            break;
        }
        case 'e': {  // APPENDS
            std::vector<Ref> items = pop_mark();
            append_items(mutable_target(top(), Kind::List, "APPENDS"), std::move(items));
            break;
        }
        case 's': {  // SETITEM
            Ref v = pop();
            Ref k = pop();
            append_items(mutable_target(top(), Kind::Dict, "SETITEM"), {std::move(k), std::move(v)});
            break;
        }
        case 'u': {  // SETITEMS
            std::vector<Ref> items = pop_mark();
            if (items.size() % 2) fail("SETITEMS with an odd number of items");
            append_items(mutable_target(top(), Kind::Dict, "SETITEMS"), std::move(items));
            break;
        }
        case 'q':  // BINPUT
            memo_put(le(1));
            break;
        case 'r':  // LONG_BINPUT
            memo_put(le(4));
            break;
        case 0x94:  // MEMOIZE
            memo_put(memo_.size());
            break;
        case 'h':  // BINGET
            memo_get(le(1));
            break;
        case 'j':  // LONG_BINGET
            memo_get(le(4));
            break;
        case 'J':  // BININT: signed 32-bit
            push(make_int((int32_t)(uint32_t)le(4)));
            break;
        case 'K':  // BININT1
            push(make_int((int64_t)le(1)));
            break;
        case 'M':  // BININT2
            push(make_int((int64_t)le(2)));
            break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
            const uint64_t k = le(1);
            if (k > 8) fail("integer of " + std::to_string(k) + " bytes is too large");
            uint64_t v = k ? le((size_t)k) : 0;
            if (k > 0 && k < 8 && (v >> (8 * k - 1)) & 1) v |= ~0ull << (8 * k);  // sign-extend
            push(make_int((int64_t)v));
            break;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
            const uint8_t *q = take(8);
            uint64_t bits = 0;
            for (int j = 0; j < 8; ++j) bits = (bits << 8) | q[j];
            Ref o = make(Kind::Float);
            std::memcpy(&o->f, &bits, 8);
            push(o);
            break;
        }
        case 'N':  // NONE
            push(make(Kind::None));
            break;
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
            Ref o = make(Kind::Bool);
            o->b = op_ == 0x88;
            push(o);
            break;
        }
        case 'X': {  // BINUNICODE
            const uint64_t len = le(4);
            push(make_str(take(len), len));
            break;
        }
        case 0x8c: {  // SHORT_BINUNICODE
            const uint64_t len = le(1);
            push(make_str(take(len), len));
            break;
        }
        case 0x8d: {  // BINUNICODE8
            const uint64_t len = le(8);
            push(make_str(take(len), len));
            break;
        }
        case 'T': {  // BINSTRING: signed 32-bit length
            const int32_t len = (int32_t)(uint32_t)le(4);
            if (len < 0) fail("BINSTRING with negative length");
            push(make_str(take((uint64_t)len), (uint64_t)len));
            break;
        }
        case 'U': {  // SHORT_BINSTRING
            const uint64_t len = le(1);
            push(make_str(take(len), len));
            break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
            const std::string module = line();
            const std::string name = line();
            push(resolve_global(module, name));
            break;
        }
        case 0x93: {  // STACK_GLOBAL
            Ref name = pop();
            Ref module = pop();
            if (module->kind != Kind::Str || name->kind != Kind::Str) fail("STACK_GLOBAL needs two strings");
            push(resolve_global(module->s, name->s));
            break;
        }
        case 'R': {  // REDUCE
            Ref args = pop();
            Ref callable = pop();
            push(reduce(callable, args));
            break;
        }
        case 'b': {  // BUILD: the OrderedDict's _metadata attribute, or (Checkpoint mode) a placeholder's state: dropped
            pop();
            const Kind k = top()->kind;
            if (k != Kind::Dict && !(checkpoint_ && k == Kind::Opaque)) {
                fail(std::string("BUILD on a ") + kind_name(k) + " is not allowed");
            }
            break;
        }
        // ---- Checkpoint mode only (require_checkpoint_mode refuses them by name otherwise) ----
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), never called
            require_checkpoint_mode("NEWOBJ");
            pop();  // args
            Ref cls = pop();
            if (cls->kind != Kind::Global) fail(std::string("NEWOBJ on a ") + kind_name(cls->kind));
            push(make_opaque("an object of " + cls->s));
            break;
        }
        case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs), never called
            require_checkpoint_mode("NEWOBJ_EX");
            pop();  // kwargs
            pop();  // args
            Ref cls = pop();
            if (cls->kind != Kind::Global) fail(std::string("NEWOBJ_EX on a ") + kind_name(cls->kind));
            push(make_opaque("an object of " + cls->s));
            break;
        }
        case 0x8f: {  // EMPTY_SET
            require_checkpoint_mode("EMPTY_SET");
            Ref set = make_opaque("a set");
            set->is_set = true;
            set->depth = 1;
            push(set);
            break;
        }
        case 0x90: {  // ADDITEMS
            require_checkpoint_mode("ADDITEMS");
            std::vector<Ref> items = pop_mark();
            Ref &target = top();
            if (!target->is_set) fail(std::string("ADDITEMS on a ") + kind_name(target->kind) + " (expects a set)");
            if (target->frozen) fail("ADDITEMS modifies a set after it was nested elsewhere");
            append_items(*target, std::move(items));
            break;
        }
        case 0x91: {  // FROZENSET
            require_checkpoint_mode("FROZENSET");
            Ref set = make_container(Kind::Opaque, pop_mark());
            set->s = "a frozenset";
            push(set);
            break;
        }
        case 'B': case 'C': case 0x8e: case 0x96: {  // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
            require_checkpoint_mode(op_ == 'B' ? "BINBYTES" : op_ == 'C' ? "SHORT_BINBYTES" : op_ == 0x8e ? "BINBYTES8" : "BYTEARRAY8");
            const uint64_t len = le(op_ == 'B' ? 4 : op_ == 'C' ? 1 : 8);
            take(len);
            push(make_opaque("bytes"));
            break;
        }
        case 0x8b: {  // LONG4: an integer of a 4-byte length
            require_checkpoint_mode("LONG4");
            const int32_t len = (int32_t)(uint32_t)le(4);
            if (len < 0) fail("LONG4 with negative length");
            take((uint64_t)len);
            push(make_opaque("a large integer"));
            break;
        }
        case '2':  // DUP
            require_checkpoint_mode("DUP");
            push(top());
            break;
        case 'Q': {  // BINPERSID
            Ref pid = pop();
            push(persistent_load(pid));
            break;
        }
        default: {
            char hex[8];
            std::snprintf(hex, sizeof hex, "0x%02x", op_);
            if (const char *name = refused_opcode_name(op_)) {
                fail(std::string("pickle opcode ") + name + " (" + hex + ") is not allowed (only the opcodes a PyTorch "
                                                                 "state_dict needs)");
            }
            fail(std::string("unknown pickle opcode ") + hex);
        }
        }
    }
}

}  // namespace

const char *pickle_kind_name(PickleValue::Kind k) {
    switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Opaque: return "object";
    }
    return "?";
}

const PickleValue *PickleValue::get(const std::string &key) const {
    if (kind != Kind::Dict) return nullptr;
    for (size_t j = 0; j + 1 < items.size(); j += 2) {
        if (items[j]->kind == Kind::Str && items[j]->s == key) return items[j + 1].get();
    }
    return nullptr;
}

std::shared_ptr<const PickleValue> unpickle(const uint8_t *data, size_t size, const std::string &what, PickleMode mode) {
    Machine m(data, size, what, mode);
    return m.run();
}

std::vector<PickledTensor> state_dict_tensors(const PickleValue &dict, const std::string &what) {
    if (dict.kind != Kind::Dict) {
        throw_model_format(what + ": pickle holds a " + std::string(kind_name(dict.kind)) +
                           ", not a state_dict (a dict of tensors)");
    }
    std::vector<PickledTensor> out;
    out.reserve(dict.items.size() / 2);
    std::unordered_set<std::string> names;
    for (size_t j = 0; j + 1 < dict.items.size(); j += 2) {
        const Obj &k = *dict.items[j];
        const Obj &v = *dict.items[j + 1];
        if (k.kind != Kind::Str) {
            throw_model_format(what + ": state_dict key " + std::to_string(j / 2) + " is a " + kind_name(k.kind) +
                               ", not a string");
        }
        if (v.kind != Kind::Tensor) {
            throw_model_format(what + ": state_dict entry '" + printable(k.s) + "' is a " + kind_name(v.kind) +
                               ", not a tensor (only flat state_dicts of tensors are read)");
        }
        if (!names.insert(k.s).second) throw_model_format(what + ": state_dict has key '" + printable(k.s) + "' twice");
        PickledTensor t = *v.tensor;
        t.name = k.s;
        out.push_back(std::move(t));
    }
    return out;
}

std::vector<PickledTensor> unpickle_state_dict(const uint8_t *data, size_t size, const std::string &what) {
    return state_dict_tensors(*unpickle(data, size, what, PickleMode::StateDict), what);
}

}  // namespace seaopt::convert
