// Runs an lmio ONNX export in transformers.js, fully offline, and prints
// what it produced as JSON: the tokenizer's ids for the prompt, greedy ids
// from model.generate, and the text of pipeline('text-generation').
// usage: node onnx_transformersjs.mjs MODELS_DIR MODEL_NAME PROMPT N_NEW
import { env, pipeline, AutoTokenizer, AutoModelForCausalLM } from '@huggingface/transformers';

const [root, name, prompt, n] = process.argv.slice(2);
const max_new_tokens = Number(n);
env.allowRemoteModels = false; // local_files_only: a missing file is an error, never a download
env.allowLocalModels = true;
env.localModelPath = root;

const tokenizer = await AutoTokenizer.from_pretrained(name);
const prompt_ids = tokenizer.encode(prompt);
const model = await AutoModelForCausalLM.from_pretrained(name, { dtype: 'fp32' });
const inputs = tokenizer(prompt);
const out = await model.generate({ ...inputs, max_new_tokens, do_sample: false });
const ids = Array.from(out.tolist()[0], Number).slice(prompt_ids.length);
const generator = await pipeline('text-generation', name, { dtype: 'fp32' });
const [{ generated_text }] = await generator(prompt, { max_new_tokens, do_sample: false });
process.stdout.write(JSON.stringify({ prompt_ids, ids, generated_text }) + '\n');
