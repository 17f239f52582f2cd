"""SMI: predicting closed-book QA accuracy of facts from pretraining-corpus statistics."""
