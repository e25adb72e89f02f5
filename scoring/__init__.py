"""Scoring any echo file, what predict.py and app.py share: their options (`options`), the model of a checkpoint,
the clips of files and their EFs (`scorer`), every file of an archive scored, skipped or failed (`archive_clips`,
with `study_objects` for DICOM headers and `short_loops` for loops shorter than one clip), the CSV rows (`rows`),
the appendable, resumable result files (`results_stream`), the waits between torchrun ranks (`rank_sync`), how far a
video lies from the training videos (`familiarity`, its reference made by `reference`) and one EF per study
(`studies`).
Reading a video or DICOM file stays in datasets.sources (any_video, dicom), which transfer learning shares."""
