/* Embeds an installed seaopt through its C API only: load a model (argv[1]) on the CPU, tokenize, decode, sample
 * greedily a few tokens, and print them. Exit 0 on success, 1 with the library's message otherwise. */
#include <stdio.h>
#include <string.h>

#include "seaopt.h"

int main(int argc, char **argv) {
    struct seaopt_model *model = NULL;
    struct seaopt_context *ctx = NULL;
    struct seaopt_sampler *smpl = NULL;
    seaopt_model_params mp = seaopt_model_default_params();
    seaopt_context_params cp = seaopt_context_default_params();
    seaopt_sampler_params sp = seaopt_sampler_default_params();
    seaopt_token toks[64], next = 0;
    int32_t n = 0, i;
    const char *text = "Hello, my name is";
    if (argc != 2) {
        fprintf(stderr, "usage: consumer MODEL.gguf\n");
        return 1;
    }
    mp.device = SEAOPT_DEVICE_CPU;
    cp.n_ctx = 64;
    sp.temp = 0.0f;
    if (seaopt_model_load(argv[1], &mp, &model) != SEAOPT_OK || seaopt_context_new(model, &cp, &ctx) != SEAOPT_OK ||
        seaopt_sampler_new(&sp, &smpl) != SEAOPT_OK ||
        seaopt_tokenize(model, text, strlen(text), true, true, toks, 64, &n) != SEAOPT_OK) {
        fprintf(stderr, "consumer: %s\n", seaopt_last_error());
        return 1;
    }
    {
        seaopt_batch batch = seaopt_batch_get_one(toks, n);
        if (seaopt_decode(ctx, &batch) != SEAOPT_OK) {
            fprintf(stderr, "consumer: %s\n", seaopt_last_error());
            return 1;
        }
    }
    printf("%s: %d prompt tokens; greedy:", seaopt_build_info(), n);
    for (i = 0; i < 4; ++i) {
        seaopt_batch one;
        if (seaopt_sampler_sample(smpl, ctx, -1, &next) != SEAOPT_OK) break;
        printf(" %d", next);
        one = seaopt_batch_get_one(&next, 1);
        if (seaopt_decode(ctx, &one) != SEAOPT_OK) break;
    }
    printf("\n");
    seaopt_sampler_free(smpl);
    seaopt_context_free(ctx);
    seaopt_model_free(model);
    return i == 4 ? 0 : 1;
}
