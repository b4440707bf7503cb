/* The model layer's internal interfaces, for the checkpoint code. The
 * architecture table is in arch.h. */
#ifndef LMIO_MODEL_H
#define LMIO_MODEL_H
#include "../core/json.h"

/* The config's JSON object itself (borrowed; valid until lmio_config_free). */
lmio__json *lmio__config_json(const lmio_config *c);
/* Where the config was loaded from ("config.json" when it was built in
 * memory), for messages. Borrowed. */
const char *lmio__config_path(const lmio_config *c);

/* Where the config was loaded from ("config.json" if built in memory), so
 * that messages name the real file (borrowed). */
const char *lmio__config_path(const lmio_config *c);

#endif
