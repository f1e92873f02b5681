"""Semantic-ID tokenizers: item text -> sentence embeddings -> discrete codes.

Pipeline (spec ``../shared/specs/semantic_ids.md``; config keys in ``properties/sid.yaml``)::

    .item text --text.encode_texts--> embeddings --build.pca_whiten--> x
        --rqvae.train_rqvae | rkmeans.residual_kmeans--> codes [n, L]
        --collision.add_collision_level--> codes [n, L+1] (all distinct)

``build.build_semantic_ids(config, dataset)`` runs it behind a content-hashed cache
(``cache.py``); ``recbole_genrec.data.dataset.SemanticIDDataset`` exposes the result to
models; ``python -m recbole_genrec.tokenizer`` prints the quality report
(``quality.tokenizer_quality``).
"""
