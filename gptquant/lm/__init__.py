"""Everything that needs torch/transformers: loading a user's GPT-2 checkpoint, pretraining,
generation and export to an ONNX feature bundle. Nothing outside gptquant.lm imports torch."""
