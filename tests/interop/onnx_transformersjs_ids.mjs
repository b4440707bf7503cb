// Runs an lmio ONNX export in transformers.js, fully offline, on token ids
// (no tokenizer needed) and prints the greedy continuation's ids as JSON.
// usage: node onnx_transformersjs_ids.mjs MODELS_DIR MODEL_NAME 1,2,3 N_NEW
import { env, AutoModelForCausalLM, Tensor } from '@huggingface/transformers';

const [root, name, idList, n] = process.argv.slice(2);
env.allowRemoteModels = false; // local_files_only: a missing file is an error, never a download
env.allowLocalModels = true;
env.localModelPath = root;

const prompt = idList.split(',').map(BigInt);
const model = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32' });
const input_ids = new Tensor('int64', BigInt64Array.from(prompt), [1, prompt.length]);
const attention_mask = new Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]);
const out = await model.generate({ input_ids, attention_mask, max_new_tokens: Number(n), do_sample: false });
const ids = Array.from(out.tolist()[0], Number).slice(prompt.length);
process.stdout.write(JSON.stringify({ model_type: model.config.model_type, ids }) + '\n');
