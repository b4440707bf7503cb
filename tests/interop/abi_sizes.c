/* Prints the layout of the public structs the Python tests mirror with
 * ctypes, so test_abi.py can catch a header change the mirror missed. */
#include <lmio.h>
#include <stddef.h>
#include <stdio.h>

#define F(type, field) printf("%s\"%s\": %zu", first ? "" : ", ", #field, offsetof(type, field)), first = 0

int main(void)
{
    int first = 1;
    printf("{\"Tensor\": {\"size\": %zu, ", sizeof(lmio_tensor));
    F(lmio_tensor, name); F(lmio_tensor, dtype); F(lmio_tensor, ndim); F(lmio_tensor, shape); F(lmio_tensor, data);
    F(lmio_tensor, nbytes); F(lmio_tensor, numel); F(lmio_tensor, file_offset); F(lmio_tensor, source);
    first = 1;
    printf("}, \"Error\": {\"size\": %zu, ", sizeof(lmio_error));
    F(lmio_error, code); F(lmio_error, offset); F(lmio_error, path); F(lmio_error, key); F(lmio_error, message);
    first = 1;
    printf("}, \"SaveOpts\": {\"size\": %zu, ", sizeof(lmio_save_opts));
    F(lmio_save_opts, struct_size); F(lmio_save_opts, dtype); F(lmio_save_opts, durable); F(lmio_save_opts, progress); F(lmio_save_opts, progress_ctx);
    first = 1;
    printf("}, \"PretrainedOpts\": {\"size\": %zu, ", sizeof(lmio_pretrained_opts));
    F(lmio_pretrained_opts, struct_size); F(lmio_pretrained_opts, dtype); F(lmio_pretrained_opts, max_shard_size); F(lmio_pretrained_opts, durable);
    F(lmio_pretrained_opts, format); F(lmio_pretrained_opts, source_dir);
    F(lmio_pretrained_opts, keep_other_files);
    printf("}}\n");
    return 0;
}
