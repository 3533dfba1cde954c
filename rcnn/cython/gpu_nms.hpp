// boxes: (n, 5) float32 sorted by descending score. Returns the number of kept rows written to keep_out
// (indices into the sorted array), or -1 with a message in errbuf on a CUDA error.
int gpu_nms_sorted(const float* boxes, int n, float thresh, int device_id, int* keep_out,
                   char* errbuf, int errlen);
