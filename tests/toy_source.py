"""``isic2020``: ISIC 2020's ``image_name,patient_id,target`` beside ``<image_name>.jpg`` (a toy source)."""

from hardmine.data.images import index_images, read_csv, require_columns
from hardmine.data.sources.base import DataSource

GROUND_TRUTH = "ISIC_2020_Training_GroundTruth.csv"


class Isic2020(DataSource):
    name = "isic2020"
    default_positive = ["1"]

    def detect(self, root, metadata):
        return (root / GROUND_TRUTH).is_file()

    def read(self, root, metadata):
        frame = read_csv(root / GROUND_TRUTH)
        require_columns(frame, ("image_name", "patient_id", "target"), root / GROUND_TRUTH)
        found = index_images(root, (".jpg",))
        return frame.rename(columns={"image_name": "id", "target": "class_name", "patient_id": "group"}).assign(
            path=frame["image_name"].map(found)), root.resolve()
