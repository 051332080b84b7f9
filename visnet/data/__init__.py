"""From files to model inputs: readers -> records -> samplers and tf.data pipelines.

The names below import without TensorFlow; the pipelines live in `visnet.data.pipeline`.
"""

from visnet.data.image_spec import NORMALIZATIONS, ImageSpec, parse_size
from visnet.data.protocol import EpisodeSettings, Protocol, make_protocol
from visnet.data.readers import load_dataset, readers
from visnet.data.records import Dataset, EmptyDatasetError, Record, SkipReport
from visnet.data.samplers import EpisodeSampler, PairSampler, PKSampler, TripletSampler
from visnet.data.validation import check_image_file, check_images

__all__ = [
    "NORMALIZATIONS", "Dataset", "EmptyDatasetError", "EpisodeSampler", "EpisodeSettings", "ImageSpec",
    "PKSampler", "PairSampler", "Protocol", "Record", "SkipReport", "TripletSampler", "check_image_file",
    "check_images", "load_dataset", "make_protocol", "parse_size", "readers",
]
