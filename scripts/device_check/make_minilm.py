"""Random weights for the MiniLM stand-in: copies SOURCE (the model's small files) to TARGET and saves a randomly
initialised BERT of its config there. Embeddings then mean nothing; the device tests do not assert on them."""

import shutil
import sys

import torch
from transformers import BertConfig, BertModel

source, target = sys.argv[1], sys.argv[2]
shutil.copytree(source, target, dirs_exist_ok=True)
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(target)).save_pretrained(target, safe_serialization=True)
