/* _fastseg: placeholder until the native data path lands (see runtime/native.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastseg", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__fastseg(void) { return PyModule_Create(&module); }
