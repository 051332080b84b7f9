# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO ?= demo

.PHONY: install demo test lint benchmark clean chromium

# (Re)install when the venv is missing or the dependencies changed.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The main job, on a generated catalogue: the HOG baseline end to end (features -> closed-set
# k-NN -> open-set retrieval -> few-shot table); the weak-label image-text model on an
# ImageNet-pretrained EfficientNet-Lite0 trunk (weights from its package, no download), kept
# frozen while its head learns the catalogue's base classes' names (on this synthetic catalogue
# fine-tuning the trunk too lowers validation mAP from 0.90 to 0.82), measured the same way; its export
# for TF Serving; a gallery of the catalogue; then the search service and its web page at
# http://127.0.0.1:$(PORT)/ (Ctrl-C stops it). SERVE=check starts the service, answers one
# search over HTTP and stops (CI).
PORT ?= 8000
SERVE ?= yes
# The gallery's index: auto (brute at this size), or e.g. milvus (Milvus Lite in $(DEMO)/index/milvus.db).
INDEX_BACKEND ?= auto
demo: $(STAMP)
	rm -rf $(DEMO)/runs/weakly $(DEMO)/models/shop $(DEMO)/index
	$(BIN)/python -m visnet.data.catalogue --out $(DEMO)/catalogue
	$(BIN)/python -m visnet.evaluate --embedder hog --data $(DEMO)/catalogue \
		--classifiers prototype,1nn,mlp --out $(DEMO)/hog-results.json
	$(BIN)/python -m visnet.train --arch weakly --data $(DEMO)/catalogue --split open-set \
		--backbone efficientnet-lite0 --weights imagenet --trainable none --image-size 96x72 \
		--embedding-dim 64 --negatives 20 --epochs 8 --steps-per-epoch 20 --lr 3e-3 --out $(DEMO)/runs/weakly
	$(BIN)/python -m visnet.evaluate --run $(DEMO)/runs/weakly --data $(DEMO)/catalogue \
		--classifiers prototype,1nn,mlp --out $(DEMO)/weakly-results.json
	$(BIN)/python -m visnet.export --run $(DEMO)/runs/weakly --out $(DEMO)/models/shop
	$(BIN)/python -m visnet.index build --model $(DEMO)/models/shop --data $(DEMO)/catalogue --out $(DEMO)/index \
		--backend $(INDEX_BACKEND)
	$(BIN)/python -m serving.api --model $(DEMO)/models/shop --index $(DEMO)/index --port $(PORT) \
		$(if $(filter check,$(SERVE)),--check,)

# The web page's browser test runs Debian's Chromium; install it when it is missing (needs root or sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Two test processes, each taking whole files (a file's session fixtures are built once per process);
# TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2
test: $(STAMP) chromium
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

# The README's results (needs ../shared/data/fashion-products).
# The second seed of effnet-photo-288-all, alone and with the first as one model, added to the
# re-ranking and transductive tables (settings chosen on effnet-photo-288's validation classes,
# a row already in each table).
SEEDS = --data ../shared/data/fashion-products --merge \
	--run effnet-photo-288-all-seed1=benchmarks/runs/effnet-photo-288-all-seed1@352x264 \
	--run effnet-photo-288-all+seed1=benchmarks/runs/effnet-photo-288-all+benchmarks/runs/effnet-photo-288-all-seed1@352x264 \
	--chosen-by effnet-photo-288-all-seed1=effnet-photo-288 --chosen-by effnet-photo-288-all+seed1=effnet-photo-288
# The ImageNet class embedding beside the best runs: its share chosen on effnet-photo-288's
# validation classes (benchmarks/imagenet_classes.py chose 0.6), then re-ranking and transductive
# few-shot on top, their settings chosen on effnet-photo-288 with the classes.
CLASSES = --data ../shared/data/fashion-products --merge \
	--run effnet-photo-288+classes=benchmarks/runs/effnet-photo-288@352x264 \
	--run effnet-photo-288-all+classes=benchmarks/runs/effnet-photo-288-all@352x264 \
	--run effnet-photo-288-all+seed1+classes=benchmarks/runs/effnet-photo-288-all+benchmarks/runs/effnet-photo-288-all-seed1@352x264 \
	--imagenet-classes effnet-photo-288+classes=0.6@288x216 --imagenet-classes effnet-photo-288-all+classes=0.6@288x216 \
	--imagenet-classes effnet-photo-288-all+seed1+classes=0.6@288x216 \
	--chosen-by effnet-photo-288-all+classes=effnet-photo-288+classes \
	--chosen-by effnet-photo-288-all+seed1+classes=effnet-photo-288+classes
# EfficientNet-Lite2 fine-tuned with effnet-photo-288-all's recipe, alone and beside it as one
# model, run at 288x216; the classes' share and the re-ranking and soft k-means settings are the
# ones effnet-photo-288's validation classes chose (with the classes: effnet-photo-288+classes).
LITE2 = --data ../shared/data/fashion-products --merge \
	--run lite2-photo-288-all=benchmarks/runs/lite2-photo-288-all@288x216 \
	--run lite2+effnet-photo-288-all=benchmarks/runs/lite2-photo-288-all+benchmarks/runs/effnet-photo-288-all@288x216 \
	--chosen-by lite2-photo-288-all=effnet-photo-288 --chosen-by lite2+effnet-photo-288-all=effnet-photo-288
LITE2_CLASSES = --run lite2-photo-288-all+classes=benchmarks/runs/lite2-photo-288-all@288x216 \
	--run lite2+effnet-photo-288-all+classes=benchmarks/runs/lite2-photo-288-all+benchmarks/runs/effnet-photo-288-all@288x216 \
	--imagenet-classes lite2-photo-288-all+classes=0.6@288x216 --imagenet-classes lite2+effnet-photo-288-all+classes=0.6@288x216 \
	--chosen-by lite2-photo-288-all+classes=effnet-photo-288+classes \
	--chosen-by lite2+effnet-photo-288-all+classes=effnet-photo-288+classes
# The two Lite2 seeds as one model, and with effnet-photo-288-all as a third member.
L2 = benchmarks/runs/lite2-photo-288-all
L2S1 = benchmarks/runs/lite2-photo-288-all-seed1
L0 = benchmarks/runs/effnet-photo-288-all
LITE2_SEEDS = --data ../shared/data/fashion-products --merge \
	--run lite2+seed1=$(L2)+$(L2S1)@288x216 --run lite2+seed1+effnet-photo-288-all=$(L2)+$(L2S1)+$(L0)@288x216 \
	--chosen-by lite2+seed1=effnet-photo-288 --chosen-by lite2+seed1+effnet-photo-288-all=effnet-photo-288
LITE2_SEEDS_CLASSES = --run lite2+seed1+classes=$(L2)+$(L2S1)@288x216 \
	--run lite2+seed1+effnet-photo-288-all+classes=$(L2)+$(L2S1)+$(L0)@288x216 \
	--imagenet-classes lite2+seed1+classes=0.6@288x216 \
	--imagenet-classes lite2+seed1+effnet-photo-288-all+classes=0.6@288x216 \
	--chosen-by lite2+seed1+classes=effnet-photo-288+classes \
	--chosen-by lite2+seed1+effnet-photo-288-all+classes=effnet-photo-288+classes
benchmark: $(STAMP)
	$(BIN)/python benchmarks/baseline_quality.py --data ../shared/data/fashion-products --embedder hog --runs 3
	$(BIN)/python benchmarks/baseline_quality.py --data ../shared/data/fashion-products --embedder pixels --runs 3
	$(BIN)/python benchmarks/hog_grey_source.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/metric_learning.py --data ../shared/data/fashion-products --archs siamese,siamese+hog,hybrid,visnet,capsule
	$(BIN)/python benchmarks/per_class_ap.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/weak_labels.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/weak_labels.py --data ../shared/data/fashion-products --recipe siamese-trunk
	$(BIN)/python benchmarks/training_throughput.py --data ../shared/data/fashion-products --archs siamese,hybrid,visnet,capsule --steps 10
	$(BIN)/python -m visnet.fewshot --run benchmarks/runs/hybrid --data ../shared/data/fashion-products \
		--ways 5,10,16 --shots 1,5,10 --out benchmarks/results/fewshot/hybrid --check-images header
	$(BIN)/python -m visnet.fewshot --embedder hog --data ../shared/data/fashion-products \
		--ways 5,10,16 --shots 1,5,10 --out benchmarks/results/fewshot/hog --check-images header
	$(BIN)/python benchmarks/maml_fewshot.py --data ../shared/data/fashion-products --epochs 6 --steps 100 \
		--maml-episodes 300 --inner-lr 0.01 --meta-batch 2 --test-inner-steps 10
	$(BIN)/python benchmarks/layer_removal.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/quality.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products \
		--recipes effnet-siamese,effnet-closed,effnet-photo,effnet-hybrid,effnet-visnet,effnet-protonet,effnet-maml
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-224 \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-photo-224 \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-photo-288 \
		--no-off-the-shelf --merge --eval-sizes 352x264
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-photo-352 \
		--no-off-the-shelf --merge
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-photo-288-all \
		--no-off-the-shelf --merge --eval-sizes 352x264
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-288 \
		--no-off-the-shelf --merge --eval-sizes 352x264
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-224-seed1 \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-224-10ep \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-224-20ep \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/gallery_smoothing.py --data ../shared/data/fashion-products \
		--run benchmarks/runs/effnet-closed-224-20ep --image-size 288x216
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-224-10ep-512 \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/gallery_smoothing.py --data ../shared/data/fashion-products \
		--run benchmarks/runs/effnet-closed-224-10ep-512 --image-size 288x216 --out benchmarks/results/gallery_smoothing_512_10ep
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-closed-224-20ep-512 \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/gallery_smoothing.py --data ../shared/data/fashion-products \
		--run benchmarks/runs/effnet-closed-224-20ep-512 --image-size 288x216 --out benchmarks/results/gallery_smoothing_512
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes effnet-photo-288-all-seed1 \
		--no-off-the-shelf --merge --eval-sizes 352x264
	$(BIN)/python benchmarks/reranking.py --data ../shared/data/fashion-products --image-size 224x168 \
		--run effnet-siamese=benchmarks/runs/effnet-siamese --run effnet-photo=benchmarks/runs/effnet-photo \
		--run effnet-photo-224=benchmarks/runs/effnet-photo-224@288x216 \
		--run effnet-photo-288=benchmarks/runs/effnet-photo-288@288x216 \
		--run effnet-photo-288=benchmarks/runs/effnet-photo-288@352x264 \
		--run effnet-photo-288-all=benchmarks/runs/effnet-photo-288-all@352x264 \
		--chosen-by effnet-photo-288-all=effnet-photo-288
	$(BIN)/python benchmarks/reranking.py $(SEEDS)
	$(BIN)/python benchmarks/transductive.py --data ../shared/data/fashion-products \
		--run effnet-photo=benchmarks/runs/effnet-photo@224x168 \
		--run effnet-photo-288=benchmarks/runs/effnet-photo-288@352x264 \
		--run effnet-photo-288-all=benchmarks/runs/effnet-photo-288-all@352x264 \
		--chosen-by effnet-photo-288-all=effnet-photo-288
	$(BIN)/python benchmarks/transductive.py $(SEEDS)
	$(BIN)/python benchmarks/imagenet_classes.py --data ../shared/data/fashion-products --class-size 288x216 \
		--run effnet-photo-288=benchmarks/runs/effnet-photo-288@352x264 \
		--run effnet-photo-288-all=benchmarks/runs/effnet-photo-288-all@352x264 \
		--run effnet-photo-288-all-seed1=benchmarks/runs/effnet-photo-288-all-seed1@352x264 \
		--run effnet-photo-288-all+seed1=benchmarks/runs/effnet-photo-288-all+benchmarks/runs/effnet-photo-288-all-seed1@352x264 \
		--chosen-by effnet-photo-288-all=effnet-photo-288 --chosen-by effnet-photo-288-all-seed1=effnet-photo-288 \
		--chosen-by effnet-photo-288-all+seed1=effnet-photo-288
	$(BIN)/python benchmarks/reranking.py $(CLASSES)
	$(BIN)/python benchmarks/transductive.py $(CLASSES)
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes lite2-photo-288-all \
		--no-off-the-shelf --merge --eval-sizes 352x264
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes lite2-closed-224-10ep-512 \
		--no-off-the-shelf --merge --eval-sizes 288x216
	$(BIN)/python benchmarks/gallery_smoothing.py --data ../shared/data/fashion-products \
		--run benchmarks/runs/lite2-closed-224-10ep-512 --image-size 288x216 --out benchmarks/results/gallery_smoothing_lite2
	$(BIN)/python benchmarks/gallery_smoothing.py --data ../shared/data/fashion-products \
		--run benchmarks/runs/lite2-closed-224-10ep-512+benchmarks/runs/effnet-closed-224-10ep-512 --image-size 288x216 \
		--out benchmarks/results/gallery_smoothing_lite2_lite0
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes '' \
		--off-the-shelf-backbone efficientnet-lite2 --off-the-shelf-sizes 288x216 --merge
	$(BIN)/python benchmarks/imagenet_classes.py $(LITE2) --class-size 288x216 \
		--run lite2+effnet-photo-288-all=benchmarks/runs/lite2-photo-288-all+benchmarks/runs/effnet-photo-288-all@352x264
	$(BIN)/python benchmarks/reranking.py $(LITE2) $(LITE2_CLASSES)
	$(BIN)/python benchmarks/transductive.py $(LITE2)
	$(BIN)/python benchmarks/pretrained.py --data ../shared/data/fashion-products --recipes lite2-photo-288-all-seed1 \
		--no-off-the-shelf --merge
	$(BIN)/python benchmarks/reranking.py $(LITE2_SEEDS) $(LITE2_SEEDS_CLASSES)
	$(BIN)/python benchmarks/imagenet_classes.py $(LITE2_SEEDS) --class-size 288x216
	$(BIN)/python benchmarks/transductive.py --data ../shared/data/fashion-products --merge \
		--run lite2+seed1+effnet-photo-288-all=$(L2)+$(L2S1)+$(L0)@288x216 \
		--chosen-by lite2+seed1+effnet-photo-288-all=effnet-photo-288
	$(BIN)/python benchmarks/closed_set_labels.py --data ../shared/data/fashion-products \
		--run effnet-closed-224=benchmarks/runs/effnet-closed-224@288x216 --no-progress
	$(BIN)/python benchmarks/closed_set_labels.py --data ../shared/data/fashion-products \
		--run effnet-closed-224+288=benchmarks/runs/effnet-closed-224+benchmarks/runs/effnet-closed-288@288x216 \
		--merge --no-progress
	$(BIN)/python benchmarks/closed_set_labels.py --data ../shared/data/fashion-products \
		--run effnet-closed-224+seed1=benchmarks/runs/effnet-closed-224+benchmarks/runs/effnet-closed-224-seed1@288x216 \
		--merge --no-progress
	$(BIN)/python benchmarks/weak_labels.py --data ../shared/data/fashion-products --recipe imagenet-trunk
	$(BIN)/python benchmarks/weak_labels.py --data ../shared/data/fashion-products --recipe imagenet-trunk --word-power 1
	$(BIN)/python benchmarks/word_probe.py --data ../shared/data/fashion-products
	$(BIN)/python benchmarks/pretrained.py --render
	$(BIN)/python benchmarks/photo_queries.py --data ../shared/data/fashion-products \
		--run effnet-siamese=benchmarks/runs/effnet-siamese --run effnet-photo=benchmarks/runs/effnet-photo
	$(BIN)/python benchmarks/host_settings.py --steps 6
	$(BIN)/python benchmarks/tuning_search.py --data ../shared/data/fashion-products --arch siamese --max-trials 8
	$(BIN)/python benchmarks/export_throughput.py --run benchmarks/runs/weakly-siamese-trunk --data ../shared/data/fashion-products
	$(BIN)/python -m visnet.export --run benchmarks/runs/weakly-siamese-trunk --out benchmarks/models/weakly-siamese-trunk \
		--version 1 --overwrite
	$(BIN)/python -m visnet.index build --model benchmarks/models/weakly-siamese-trunk \
		--data ../shared/data/fashion-products --out benchmarks/index/fashion
	$(BIN)/python benchmarks/api_load.py --model benchmarks/models/weakly-siamese-trunk --index benchmarks/index/fashion
	$(BIN)/python benchmarks/index_search.py --sizes 10000,100000,1000000 --dim 128 --queries 1000 \
		--backends balltree,brute,faiss-hnsw
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/update_readme.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache build *.egg-info
