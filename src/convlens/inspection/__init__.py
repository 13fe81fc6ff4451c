"""Looking inside a trained model: tensors in, tensors out; nothing here draws."""
