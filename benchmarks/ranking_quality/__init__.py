"""Does the search pick the right model? A ranking-quality benchmark on a zoo of real fine-tunes (issue 16).

The data flow, one module a stage:

- `tasks`: the source tasks the zoo's fine-tunes were trained on, and the targets the search ranks for
  (disjoint from every source's items);
- `finetune`: one training loop for timm and transformers models, used twice: to build the zoo, and to
  fine-tune every candidate fully on every target over several seeds (the ground truth);
- `zoo`: the zoo's candidates (EfficientNet-Lite0/1/2 with ImageNet weights, MiniLM, their fine-tunes, and
  Lite0/Lite1 models trained from scratch), written as Hub repos with `base_model` lineage;
- `truth`: the ground truth, tuned once and stored as `ground_truth.csv`, of the zoo whose weights the zoo's
  table records (a rebuilt zoo that differs is measured anew);
- `quality`: the search side (every scorer, every target, through `ModelSearcher` on the local Hub) and the
  metrics against the ground truth;
- `card`: the `ranking_quality` config of the benchmark card, and the score-vs-accuracy figure.

`python -m benchmarks.ranking_quality --build` builds the zoo and the ground truth (hours of CPU: it resumes, and a
second process with `--reverse` shares the work);
`python -m benchmarks.ranking_quality` runs the search side from them (minutes).
"""
