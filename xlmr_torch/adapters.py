"""LoRA and other adapters on the PyTorch models: PEFT, used as it is.

``xlmr_tf.adapters`` and ``xlmr_flax.adapters`` implement LoRA in PEFT's format for the frameworks
PEFT does not serve. For PyTorch, PEFT is the library made for the job and works on the xlmr_torch
classes unchanged -- every PEFT method (LoRA, DoRA, IA3, prompt tuning...), ``get_peft_model``,
``PeftModel.from_pretrained``, ``merge_and_unload`` -- because their module names and
``state_dict`` keys are HF's. So this module adds nothing to PEFT; it says how the pieces meet
(``tests/test_adapters.py`` checks each against HF's classes):

- Train::

      from peft import LoraConfig, get_peft_model
      model = XLMRobertaForSequenceClassification.from_pretrained("xlm-roberta-base", num_labels=3)
      model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, target_modules=["query", "value"]))
      ...  # train
      model.save_pretrained("my-adapter")  # adapter_config.json + adapter_model.safetensors

  PEFT records ``model.name_or_path`` (set by ``from_pretrained``) as the adapter's
  ``base_model_name_or_path``. The adapter loads onto HF's own class, and into ``xlmr_tf`` and
  ``xlmr_flax`` with ``model.load_adapter("my-adapter")``.

- Serve an adapter from any framework: ``PeftModel.from_pretrained(model, "my-adapter")``.

- Merge: ``merged = peft_model.merge_and_unload()`` is an xlmr_torch model again, and
  ``merged.save_pretrained(path, format=...)`` writes the full checkpoint in any of the four
  formats, like any other.

``xlmr.adapters.LoraConfig`` (the LoRA config the TF and Flax models take) converts to PEFT's with
``peft.LoraConfig(**{k: v for k, v in config.to_dict().items() if k != "peft_type"})``, and a
``peft.LoraConfig`` is accepted by the TF and Flax ``add_adapter`` as it is.
"""

__all__: list[str] = []
