"""Everything that needs torch/transformers: loading a user's GPT-2 checkpoint, pretraining,
generation, sentiment heads, the detector and export to an ONNX feature bundle. Nothing outside
gptquant.lm imports torch.

checkpoint   a user's HF GPT-2 directory: config, tokenizer, weights (safetensors / weights_only)
pretrain     causal-LM (continued) pretraining
generate     sampling from a checkpoint
data         labelled tables: reading, label order, splits, K-shot samples
heads        the sentiment heads (P-tuning, fine-tune, linear probe) as nn.Modules; running them in batches
verbalizers  one label word per class for P-tuning (fixed or heuristic) and the anchor words
label_search --verbalizer search: label words chosen among candidates on validation macro-F1
trainloop    optimiser step and resumable state (shared with pretrain); the heads' early-stopping loop
sentiment    train_sentiment: split, fit a head and the baseline, write the checkpoint
auto         --method auto: every head on one split, the best by validation macro-F1
hybrid       fitting the hybrid head (token n-grams + GPT probe; its numpy side is runtime.hybrid)
headfile     the trained-checkpoint format: head/baseline/detector files, load_head, bundle_head
evaluate     predict_probs and evaluate on a labelled table (checkpoint or bundle)
baseline     the TF-IDF + logistic regression baseline
detector     the machine-written-text detector over the scorer's statistics
metrics      classification report, ECE, temperature scaling, AUROC
export       ONNX feature graph, int8 with a parity gate, the bundle
parity       torch vs exported-graph features on fixed texts, agreement figures, the int8 limits
hybrid_bundle  the hybrid head's probabilities for the parity gate and its files in the bundle
bundle_cache gptquant.load_model: a checkpoint exported once (int8) into the cache, then the runtime
"""
