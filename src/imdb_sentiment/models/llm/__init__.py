"""Language models as sentiment classifiers: label scoring (``llm-score``), LoRA fine-tuning of the
scorer (``llm-sft``) and prompting an OpenAI-compatible server (``llm-prompt``)."""
