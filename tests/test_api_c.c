/* include/seaopt.h used from C99: defaults, status names, and a clean error for a missing file. */
#include <stdio.h>
#include <string.h>

#include "seaopt.h"

static int failures = 0;
#define CHECK(cond)                                                   \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                               \
        }                                                             \
    } while (0)

int main(void) {
    struct seaopt_model *model = NULL;
    seaopt_model_params mp = seaopt_model_default_params();
    seaopt_context_params cp = seaopt_context_default_params();
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    seaopt_attention_layer_bench_params bp = seaopt_attention_layer_bench_default_params();
    seaopt_attention_layer_bench_result br;
    seaopt_status st;

    CHECK(mp.device == SEAOPT_DEVICE_AUTO);
    CHECK(cp.n_seq_max == 1);
    CHECK(sp.top_k == 40);
    CHECK(strcmp(seaopt_status_name(SEAOPT_ERR_MODEL_FORMAT), "SEAOPT_ERR_MODEL_FORMAT") == 0);
    CHECK(strlen(seaopt_version()) > 0);

    st = seaopt_model_load("/nonexistent/model.gguf", &mp, &model);
    CHECK(st == SEAOPT_ERR_IO);
    CHECK(model == NULL);
    CHECK(strstr(seaopt_last_error(), "/nonexistent/model.gguf") != NULL);
    CHECK(seaopt_decode(NULL, NULL) == SEAOPT_ERR_INVALID_ARGUMENT);
    CHECK(seaopt_generate_greedy(NULL, 0, 0, 1, NULL) == SEAOPT_ERR_INVALID_ARGUMENT);
    {
        int32_t n_out = 7;
        CHECK(seaopt_generate_greedy_until(NULL, 0, 0, 1, 2, NULL, &n_out) == SEAOPT_ERR_INVALID_ARGUMENT);
        CHECK(n_out == 7);
    }
    CHECK(!seaopt_model_has_sea(NULL));
    CHECK(!seaopt_token_is_special(NULL, 2));
    CHECK(!seaopt_model_add_bos(NULL));
    CHECK(bp.n_tokens == 2048 && bp.attention == SEAOPT_ATTENTION_DENSE);
    CHECK(seaopt_bench_attention_layer(NULL, &bp, &br) == SEAOPT_ERR_INVALID_ARGUMENT);
    CHECK(br.mean_ms == 0.0 && !br.pos_stretched);

    printf("%s\n%d passed, %d failed\n", seaopt_build_info(), failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}
