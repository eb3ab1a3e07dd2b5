"""What a trained model is worth: evaluation, novelty of samples, the HTML report."""
