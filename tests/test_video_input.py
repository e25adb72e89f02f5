"""No tests here any more (datasets/sources/test_any_video.py and test_dicom.py hold them): this module only keeps
`from test_video_input import ...` working in test_predict.py, test_predict_archive.py and test_app.py until they
move and import these helpers from conftest. Delete it then."""
from conftest import intersection, write_dicom, write_screen_recording  # noqa: F401
