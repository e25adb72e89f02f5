"""Readers of echo data beyond EchoNet-Dynamic, one per source: any echo video a user has (`any_video`: AVI, MP4,
MOV, MKV and DICOM, whose reading is `dicom`), CAMUS (`camus`), HMC-QU (`hmcqu`) and a labelled video folder
(`label_folder`). Scoring whole files and archives with them is the scoring/ package's job."""
