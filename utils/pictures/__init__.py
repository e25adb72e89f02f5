"""Pictures drawn from computed numbers: EF scatter + Bland-Altman, embedding maps, ROC curves, EF along a
video (`plots`), Grad-CAM overlays as videos and frame strips (`cam`)."""
