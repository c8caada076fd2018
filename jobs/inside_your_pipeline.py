"""InBedder inside your own pipeline, on the bundled sample: a Spark transformation and a Ray Data stage.

    spark-submit jobs/inside_your_pipeline.py --out out/pipeline        # or: python jobs/inside_your_pipeline.py

Both write Parquet whose vector fields record the model and question, so `inbedder index --table
out/pipeline/spark --instruction intent` indexes either output.
"""

from __future__ import annotations

import argparse
import os
from importlib.resources import files

QUESTIONS = {"intent": "What does the customer want?", "feeling": "How does the customer feel?"}


def with_spark(sample: str, out: str, spark=None) -> int:
    from pyspark.sql import SparkSession

    from inbedder.spark import embed

    spark = spark or SparkSession.builder.master("local[2]").config("spark.driver.host", "127.0.0.1") \
        .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate()
    tickets = spark.read.parquet(sample).limit(60)
    embedded = embed(tickets, text="text", questions=QUESTIONS, key="id")  # lazy: nothing runs yet
    embedded.write.mode("overwrite").parquet(os.path.join(out, "spark"))
    return spark.read.parquet(os.path.join(out, "spark")).where("_inbedder_error IS NULL").count()


def with_ray(sample: str, out: str) -> int:
    import ray

    import inbedder.ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", num_cpus=2,
                 object_store_memory=256 * 2**20)
    ds = ray.data.read_parquet(sample).limit(60)
    ds = ds.map_batches(inbedder.ray.Embed, batch_format="pyarrow", batch_size=32, concurrency=1, num_cpus=0.5,
                        fn_constructor_kwargs={"text": "text", "questions": QUESTIONS, "key": "id"})
    ds.write_parquet(os.path.join(out, "ray"))
    return ray.data.read_parquet(os.path.join(out, "ray")).count()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/pipeline")
    args = ap.parse_args()
    sample = str(files("inbedder") / "data" / "banking77_sample.parquet")
    print(f"Spark: {with_spark(sample, args.out)} rows embedded -> {args.out}/spark")
    print(f"Ray Data: {with_ray(sample, args.out)} rows embedded -> {args.out}/ray")


if __name__ == "__main__":
    main()
