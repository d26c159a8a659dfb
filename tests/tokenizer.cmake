# The tokenizer cases files are gzip (tests/jsonl_cases.h): zlib (zlib1g-dev, scripts/install-deps.sh).
find_package(ZLIB REQUIRED)
# The GPT-2 byte-level BPE tokenizer (tokenizer/) against reference ids, using the OPT files in
# models/opt-tokenizer. With the shared data it also checks the 26 reference cases (OPT and GPT-2
# files) and the full WikiText-2 test text id for id (about a second in a Release build).
seaopt_add_test(NAME test_tokenizer SOURCES test_tokenizer.cpp LABELS cpu)
if(SEAOPT_HAVE_SHARED_DATA)
  target_compile_definitions(test_tokenizer PRIVATE SEAOPT_TOKENIZER_SHARED_DATA_TESTS=1)
endif()
# Against Hugging Face's own OPT tokenizer (tests/data/tokenizer-hf, made by tests/fixtures/make_tokenizer_cases.py
# with transformers): every code point's pre-tokenizer class and 4,000 random texts.
seaopt_add_test(NAME test_tokenizer_hf SOURCES test_tokenizer_hf.cpp LIBS ZLIB::ZLIB LABELS cpu)
# Added tokens (a fine-tune's chat markers; tests/data/tokenizer-added, made by
# tests/fixtures/make_added_token_cases.py with transformers): every AddedToken option, the transformers 5 layout
# (tokenizer.json only) and the transformers 4 one, through seaopt-convert and the C API.
seaopt_add_test(NAME test_tokenizer_added SOURCES test_tokenizer_added.cpp LIBS seaopt_convert ZLIB::ZLIB LABELS cpu)
